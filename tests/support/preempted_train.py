"""``python tests/support/preempted_train.py SIGTERM_AT [restore-jax train arguments]``: a preemption.

Runs ``restore-jax train`` (``restore_jax.cli.main``) in this process with two changes that make a
scheduler's "SIGTERM, SIGTERM again (then SIGKILL)" reproducible:

- the training data is :class:`support.engine_data.ArraySRData` (32-px HR, the ``ci`` preset's
  size), which sends this process a SIGTERM while global batch ``SIGTERM_AT`` is built;
- Orbax's commit of a step directory (``AtomicRenameTemporaryPath.finalize``: the rename of
  ``<step>.orbax-checkpoint-tmp`` to ``<step>``) first waits 0.5 s, sends a *second* SIGTERM, waits
  1 s, then commits. So the second signal arrives while the checkpoint exists only as the temporary
  folder: a process that has stopped handling SIGTERM by then dies with the save unfinished.

Markers on stdout: ``[test] second SIGTERM at uncommitted step N`` and ``[test] committed step N``.
Exits with ``main``'s return code.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the `support` package

from restore_jax import cli  # noqa: E402 - first: its import sets the TensorFlow log defaults


def _install(sigterm_at: int) -> None:
    from orbax.checkpoint._src.path import atomicity

    from restore_jax.train import loop
    from support.engine_data import ArraySRData

    data = ArraySRData(hr_size=32, sigterm_at=sigterm_at)

    def data_factory(config, *, catalog=None, **kwargs):
        del catalog
        return data(config, **kwargs)

    loop.default_data_factory = data_factory

    original = atomicity.AtomicRenameTemporaryPath.finalize
    state = {"sent": False}

    async def finalize(self, *args, **kwargs):
        name = self.get_final().name
        if name.isdigit() and not state["sent"]:
            state["sent"] = True
            await asyncio.sleep(0.5)
            print(f"[test] second SIGTERM at uncommitted step {name}", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(1.0)
        out = await original(self, *args, **kwargs)
        if name.isdigit():
            print(f"[test] committed step {name}", flush=True)
        return out

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


if __name__ == "__main__":
    _install(int(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
