"""A checkpoint without a training run: the engine's initial state, its weights perturbed so that
every path of the network (zero-initialised output convs, controls) contributes, saved with the
run's config snapshot by the engine's checkpointing adapter. Inference and export tests load it
like any training checkpoint, without compiling a training step."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp


def init_checkpoint(
    config, workdir: pathlib.Path, *, step: int = 1, noise: float = 0.05, seed: int = 0, mesh=None
) -> pathlib.Path:
    """Write checkpoint ``step`` of ``config``'s freshly initialised (and perturbed) state to ``workdir``
    (sharded over ``mesh``, default: the config's mesh over all devices)."""
    from restore_jax.api import make_trainer

    trainer = make_trainer(config, mesh=mesh)
    state = trainer.init_state()
    key = jax.random.key(seed)

    def perturb(tree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        keys = jax.random.split(key, max(len(leaves), 1))
        out = [
            x + noise * jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
            for x, k in zip(leaves, keys)
        ]
        return jax.tree_util.tree_unflatten(treedef, out)

    params = perturb(state.params)
    ema = {name: params[name] for name in state.ema_params}
    state = state.replace(step=jnp.asarray(step, state.step.dtype), params=params, ema_params=ema)
    ckpt = trainer.make_checkpointer(workdir)
    try:
        ckpt.save(step, state, config=trainer.config.to_dict(), force=True)
    finally:
        ckpt.close()
    return pathlib.Path(workdir)


def exported_init_checkpoint(spec: str, root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``init_checkpoint`` of config ``spec`` in ``root/run`` (step 2), exported by ``restore-jax export``
    to ``root/bundle``; returns ``(workdir, bundle_dir)``."""
    from restore_jax import api, cli

    workdir, out = root / "run", root / "bundle"
    init_checkpoint(api.load_config(spec), workdir, step=2)
    code = cli.main(["export", "--checkpoint", str(workdir), "--out", str(out)])
    assert code == 0, f"restore-jax export exited {code}"
    return workdir, out
