"""Two processes on localhost (2 fake CPU devices each, Gloo collectives) == one process with 4 devices."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np

from restore_jax.train import mesh as mesh_lib
from restore_jax.api import make_trainer
from support.engine_data import ArraySRData, tiny_sr_config

REPO = pathlib.Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from restore_jax.train import distributed
    assert distributed.initialize()  # RESTORE_JAX_* variables from the parent
    import jax
    from jax.experimental import multihost_utils
    from restore_jax.api import make_trainer
    sys.path[:0] = [{tests!r}, {engine!r}]  # the test helpers (support) and this test module
    from support.engine_data import ArraySRData
    from test_train_multiprocess import config
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    result = make_trainer(config(), data_factory=ArraySRData()).fit(sys.argv[1])
    params = jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), result.state.params)
    flat = {{"/".join(str(getattr(k, "key", k)) for k in p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}}
    if jax.process_index() == 0:
        np.savez(sys.argv[2], step=result.step, **flat)
    distributed.shutdown()
    """
)


def config():
    c = tiny_sr_config()
    c.mesh.shape = (2, 2)  # data x fsdp over the 4 global devices
    c.sharding.fsdp_min_size = 0
    c.train.num_steps = 4
    c.checkpoint.every_steps = 2
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    port = _free_port()
    script = WORKER.format(tests=str(REPO / "tests"), engine=str(REPO / "tests" / "engine"))
    procs = []
    for pid in range(2):
        env = dict(os.environ)
        env.update(
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
            RESTORE_JAX_COORDINATOR=f"localhost:{port}",
            RESTORE_JAX_NUM_PROCESSES="2",
            RESTORE_JAX_PROCESS_ID=str(pid),
            PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path / "run"), str(tmp_path / "params.npz")],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    # Meanwhile: the same run in this process on a 4-device mesh.
    c = config()
    trainer = make_trainer(c, mesh=mesh_lib.make_mesh(c.mesh, devices=jax.devices()[:4]), data_factory=ArraySRData())
    ref = trainer.fit(tmp_path / "ref")

    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        outputs.append(out)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, f"worker failed:\n{out[-4000:]}"

    got = np.load(tmp_path / "params.npz")
    assert int(got["step"]) == 4
    ref_flat = {
        "/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v)
        for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(ref.state.params))[0]
    }
    assert set(ref_flat) == set(got.files) - {"step"}
    # Same program, same data and keys; only the all-reduce implementation differs (Gloo vs
    # in-process), so agreement is to float32 rounding (measured: max |diff| ~2e-7 after 4 steps).
    for k, v in ref_flat.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    # Both processes wrote one checkpoint directory together.
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, 4]
    assert (tmp_path / "run" / "checkpoints" / "4" / "data_iter" / "process_1-of-2.json").is_file()
