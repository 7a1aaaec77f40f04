"""File locks: which process is executing a run (its claim), so that two sweeps never execute the same run.

Before it starts a run, a sweep claims it with an exclusive lock on `.<run-id>.claim` beside
the run's folder. The operating system releases the lock when the holder dies, however it
dies, so a dead sweep's claims are taken over by the next; the file says who holds it. The
book's build claims its build folder the same way (`try_lock` on a file of its own).
"""

import fcntl
import os
import socket
import time
from pathlib import Path

from lab2.runs.record import bookkeeping_path

CLAIM_SUFFIX = ".claim"


class Claim:
    """An exclusive lock on one run, held from before it starts until it is published."""

    def __init__(self, path: Path, descriptor: int):
        self.path, self._descriptor = path, descriptor

    def release(self) -> None:
        if self._descriptor is None:
            return
        # Removed while still locked, so a sweep waiting on this file notices it is gone and retries.
        self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None


def claim_path(run_dir: Path) -> Path:
    return bookkeeping_path(run_dir, CLAIM_SUFFIX)


def try_claim(run_dir: Path) -> Claim | None:
    """Claim a run for this process; None if another live process holds it."""
    return try_lock(claim_path(run_dir))


def try_lock(path: Path) -> Claim | None:
    """Hold the lock file `path` for this process; None if another live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
            return Claim(path, descriptor)
        os.close(descriptor)  # the holder released and removed it between our open and our lock


def claim_holder(run_dir: Path) -> str:
    """Who holds a run's claim, as the holder wrote it ('host pid N since HH:MM:SS')."""
    return lock_holder(claim_path(run_dir), "another sweep")


def lock_holder(path: Path, unknown: str) -> str:
    """Who holds the lock file `path`, as the holder wrote it; `unknown` if it cannot be told."""
    try:
        return Path(path).read_text().strip() or unknown
    except OSError:
        return unknown


def claimed_runs(folder: Path, run_ids) -> dict[str, str]:
    """{run id: holder} of the runs a live process holds a claim on: being executed right now.

    Only looks: an existing claim file is opened read-only and tested with a shared lock, so a
    read-only results folder can be asked too and no claim is ever taken.
    """
    held = {}
    for rid in run_ids:
        path = claim_path(Path(folder) / rid)
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        except BlockingIOError:
            held[rid] = claim_holder(Path(folder) / rid)
        finally:
            os.close(descriptor)
    return held
