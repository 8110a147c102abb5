"""``<workdir>/.lock``: one training run per workdir.

Two trainings in one workdir would interleave their checkpoint saves (and the newer one would
delete the other's in-flight files as "stale"). ``Trainer.fit`` therefore takes this lock on
process 0 before it touches the workdir and releases it when it returns or raises. The file holds
JSON ``{"pid", "host", "started", "pid_start", "argv"}``, is created with ``O_CREAT | O_EXCL`` (atomic
on local and NFSv3+ filesystems) and is removed only by the run that wrote it.

A lock left behind by a run that was killed (``kill -9``, node crash) is *stale* when it names
this host and its pid no longer runs (or runs a different process: the pid's start time differs);
it is then replaced with a log line. A lock of another host cannot be checked: the error says how
to remove it by hand.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sys
import time

from restore_jax.errors import WorkdirLockedError

__all__ = ["WorkdirLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or ``None``."""
    try:
        stat = pathlib.Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may contain spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


class WorkdirLock:
    """``acquire()`` / ``release()`` (or ``with``) the lock file of ``workdir``."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self.held = False
        self._token: dict | None = None

    def _describe(self, info: dict) -> str:
        started = info.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
        return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}"

    def _is_stale(self, info: dict) -> bool:
        """True when the lock's run is known to be gone (same host only)."""
        if info.get("host") != socket.gethostname():
            return False
        pid = info.get("pid")
        if not isinstance(pid, int):
            return False
        if pid == os.getpid():
            return False  # this very process holds it (a fit inside a fit): not stale
        if not _pid_alive(pid):
            return True
        recorded, current = info.get("pid_start"), _pid_start(pid)
        return recorded is not None and current is not None and recorded != current  # pid reused

    def acquire(self) -> list[str]:
        """Take the lock or raise :class:`WorkdirLockedError`; returns notes to log (a replaced stale lock)."""
        notes: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "pid_start": _pid_start(os.getpid()),
            "argv": sys.argv[:20],
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    info = json.loads(self.path.read_text())
                    if not isinstance(info, dict):
                        raise ValueError("not a JSON object")
                except FileNotFoundError:
                    continue  # released in between: try again
                except (OSError, ValueError):
                    info = {}  # being written right now, or damaged: treat as held
                if info and self._is_stale(info):
                    notes.append(
                        f"removed a stale lock {self.path} ({self._describe(info)}: that process is gone)"
                    )
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                who = self._describe(info) if info else "unreadable lock file"
                raise WorkdirLockedError(
                    f"workdir {self.path.parent} is in use by another training run ({who}; lock file {self.path}). "
                    "Two runs in one workdir would overwrite each other's checkpoints: wait for it to finish, "
                    "use another --workdir, or, if no run is using this workdir any more (e.g. it ran on another "
                    f"host that crashed), delete {self.path}."
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(token, f)
            self.held, self._token = True, token
            return notes
        raise WorkdirLockedError(f"could not take the lock {self.path}: it keeps being re-created by another process")

    def release(self) -> None:
        """Remove the lock file if it is still the one this object wrote."""
        if not self.held:
            return
        self.held = False
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(info, dict) and all(info.get(k) == self._token.get(k) for k in ("pid", "host", "started")):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
