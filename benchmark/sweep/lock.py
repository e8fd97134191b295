"""One writer per sweep: a lock on `results/<sweep>` held for the whole of `make sweep`.

Two sweeps writing one folder at once train every point twice and delete each other's temporary
files. So `make sweep` holds `results/<sweep>/.lock` (`filelock`: the operating system's lock, which
it releases when the holder exits, however it exits) and records who holds it in
`results/<sweep>/.lock.owner.json`: pid, host, start time and command. A second `make sweep` on the same
sweep exits at once with `SweepBusy`, naming that pid and host. An owner record without a held lock
is stale — its process died without releasing (SIGKILL, a lost node): the next sweep takes the lock
over and says whose it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from filelock import FileLock, Timeout

from benchmark.core.io import atomic_write_json

LOCK, OWNER = ".lock", ".lock.owner.json"


class SweepBusy(RuntimeError):
    """Another process holds the sweep's lock; the message names it."""


def owner_record() -> dict[str, Any]:
    """Who this process is, as the lock records it."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": " ".join(sys.argv)}


def read_owner(sweep_dir: Path) -> Optional[dict[str, Any]]:
    """The recorded holder, or None where there is no record; a record that cannot be read says so."""
    path = Path(sweep_dir) / OWNER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"pid": "?", "host": "?", "started": "?", "command": f"(unreadable {path}: {e})"}
    return data if isinstance(data, dict) else {"pid": "?", "host": "?", "started": "?", "command": "?"}


def describe(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path, say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Hold the sweep's lock for the block; yields this process's owner record.

    Raises SweepBusy at once where another process holds it. `say` gets one line when a stale lock
    (an owner record without a holder) is taken over.
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(sweep_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = read_owner(sweep_dir) or {}
        raise SweepBusy(
            f"sweep {sweep_dir.name} is already running ({describe(holder)}; {sweep_dir / OWNER}): "
            "wait for it to finish, or stop it, then run the same command again"
        ) from None
    try:
        stale = read_owner(sweep_dir)
        if stale is not None:
            say(
                f"sweep: taking over the stale lock of {sweep_dir.name} ({describe(stale)}: it ended without "
                "releasing it, e.g. killed)"
            )
        me = owner_record()
        atomic_write_json(sweep_dir / OWNER, me)
        yield me
    finally:
        (sweep_dir / OWNER).unlink(missing_ok=True)
        lock.release()
