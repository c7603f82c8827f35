"""Advisory locks on file-backed devices, shared by the mount daemon and the offline tools.

A read-write mount caches attributes because it believes it is the only writer, so every
writer (a mount, ``fsproto put``, ``fsck --repair``) takes an exclusive ``flock`` and readers a
shared one. The lock belongs to the open file, so a forked daemon keeps it.
"""

from __future__ import annotations

import fcntl
from typing import Any

from fsproto.errors import DeviceBusy


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


def lock_device(dev: Any, *, exclusive: bool, what: str = "another fsproto mount") -> None:
    """flock the device's backing file without blocking. Raises DeviceBusy when held."""
    fd = backing_fileno(dev)
    if fd is None:
        return  # memory, MMIO, NVMe: nothing else can open it by path
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DeviceBusy(f"in use by {what} (unmount it first)", device=dev.name) from None
