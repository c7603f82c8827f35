"""Device locks: one writer or many readers per file-backed device, taken where devices open.

Every device that :func:`fsproto.blockdev.open.open_device` opens is claimed by
:func:`claim_device` before it is stacked, so no caller (a mount, ``put``, ``fsck --repair``,
``write-blocks``, ``overlay commit``, ``mkfs``, a server) can forget it: a writable disk takes
an exclusive ``flock``, a read-only one a shared lock. A read-write mount caches attributes
because it believes it is the only writer, and a reader beside a writer could see metadata
half-written, so both are refused with one line naming the holder (pid and command line).

``--force`` (``force=True``) still takes the lock when it is free -- so a forced writer keeps
later ones out -- but goes on without it when it is held.

References: flock(2) (a lock belongs to the open file description, so a daemon forked after
opening keeps it; locks of one description convert, they never conflict with themselves);
proc(5) ``/proc/PID/fdinfo/FD`` ``lock:`` lines (the format of ``/proc/locks``:
``1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF``, device numbers in hex).

Limits: advisory, so only fsproto (and tools that flock, like ``util-linux`` with ``flock``)
honour it; devices without a file descriptor (memory, MMIO, user-space NVMe) are not locked.
Naming the holder needs to read its ``/proc/PID/fd``: another user's process is reported as
"another process". The pid in a lock line is the process that took the lock, which after a
fork may be gone; the holder named is the process that has the locked file open.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from fsproto.errors import DeviceBusy

_CMDLINE_MAX = 120  # characters of the holder's command line in the message


def backing_fileno(dev: Any) -> int | None:
    """The file descriptor under *dev* (through wrappers), or None when not file-backed."""
    seen = 0
    while dev is not None and seen < 16:  # wrappers nest a few levels at most
        fileno = getattr(dev, "fileno", None)
        if callable(fileno):
            return fileno()
        dev = getattr(dev, "inner", None)
        seen += 1
    return None


def _lock_key(fd: int) -> str:
    """``maj:min:inode`` as ``/proc/locks`` spells the file behind *fd*."""
    st = os.fstat(fd)
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [os.fsdecode(a) for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    text = " ".join(argv) or "?"
    return text if len(text) <= _CMDLINE_MAX else text[: _CMDLINE_MAX - 3] + "..."


def lock_holders(fd: int) -> list[str]:
    """Who holds a flock on the file behind *fd*: ``pid N (command line)`` per process.

    Scans ``/proc/*/fdinfo`` for ``lock:`` lines on the same inode (only the open file that
    holds a lock shows it). Processes we may not inspect are skipped; empty when none found.
    """
    key = f" {_lock_key(fd)} "
    found: list[str] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in sorted(pids):
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for name in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{name}") as f:
                    info = f.read()
            except OSError:
                continue
            if any(line.startswith("lock:") and "FLOCK" in line and key in line + " "
                   for line in info.splitlines()):
                found.append(f"pid {pid} ({_command_line(pid)})")
                break
    return found


def lock_fd(fd: int, *, exclusive: bool, force: bool = False, name: str | None = None) -> bool:
    """flock *fd* without blocking; returns True when the lock is held.

    Raises DeviceBusy naming the holder when it is held elsewhere, unless *force* (then returns
    False and the caller goes on unlocked).
    """
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        if force:
            return False
        holders = lock_holders(fd)
        who = ", ".join(holders) if holders else "another process"
        mode = "write" if exclusive else "read"
        raise DeviceBusy(f"in use by {who}; unmount it or stop it, or pass --force to {mode} anyway",
                         device=name) from None
    return True


def lock_device(dev: Any, *, exclusive: bool, force: bool = False) -> bool:
    """:func:`lock_fd` on the device's backing file; False for devices with no file descriptor."""
    fd = backing_fileno(dev)
    if fd is None:
        return False  # memory, MMIO, NVMe: nothing else can open it by path
    return lock_fd(fd, exclusive=exclusive, force=force, name=getattr(dev, "name", None))


def claim_device(disk: Any, *, force: bool = False) -> bool:
    """The lock every opened disk takes: exclusive when writable, shared when read-only.

    Called by open_device's stacking, so every caller gets it. Returns True when held.
    """
    return lock_device(disk, exclusive=not getattr(disk, "read_only", True), force=force)
