"""RawDevice: a block-device node (``/dev/loop0``, ``/dev/sdb``) as a BlockDevice.

References: ioctl numbers from linux ``include/uapi/linux/fs.h`` (BLKGETSIZE64 =
``_IOR(0x12, 114, size_t)``, BLKSSZGET = ``_IO(0x12, 104)``); open(2) on O_EXCL for block
devices ("fails with EBUSY if the device is in use by the system, e.g. mounted"); the
``mountinfo`` format in proc(5) (field 3 is ``major:minor``); ``/sys/dev/block/M:N/holders``
and ``.../<child>/partition`` in sysfs-block(5).

Safety: before opening, the device (and each of its partitions) is looked up in
``/proc/self/mountinfo``, ``/proc/swaps`` and sysfs ``holders``; any hit raises DeviceBusy
unless ``force=True``. Without *force* the node is then opened ``O_EXCL``, so nobody can mount
or claim it while we hold it. Read-only unless ``writable=True``. The logical sector size
(BLKSSZGET) is the block size; :func:`fsproto.blockdev.open.open_device` adapts it if asked.

Limits: Linux only; no O_DIRECT (reads go through the page cache, so a device written behind
our back by another opener may read stale until we re-open).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from fsproto.blockdev.fdio import FileDescriptorDevice
from fsproto.blockdev.lock import lock_holders
from fsproto.errors import DeviceBusy, DeviceError, DeviceNotFound, NotADevice

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268

MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"
SYSFS_DEV_BLOCK = "/sys/dev/block"


def _dev_id(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _related_dev_ids(rdev: int) -> list[str]:
    """The device itself and, for a whole disk, each of its partitions (as ``major:minor``)."""
    own = _dev_id(rdev)
    ids = [own]
    sysdir = os.path.join(SYSFS_DEV_BLOCK, own)
    try:
        children = os.listdir(sysdir)
    except OSError:
        return ids
    for child in children:
        try:
            with open(os.path.join(sysdir, child, "dev")) as f:
                if os.path.exists(os.path.join(sysdir, child, "partition")):
                    ids.append(f.read().strip())
        except OSError:
            continue
    return ids


def busy_reasons(rdev: int) -> list[str]:
    """Why the block device *rdev* is in use: mounted filesystems, swap, holders. Empty when free."""
    ids = set(_related_dev_ids(rdev))
    reasons: list[str] = []
    try:
        with open(MOUNTINFO) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[2] in ids:
                    reasons.append(f"{fields[2]} is mounted on {fields[4]}")
    except OSError:
        pass
    try:
        with open(SWAPS) as f:
            next(f, None)
            for line in f:
                name = line.split()[0] if line.split() else ""
                try:
                    st = os.stat(name)
                except OSError:
                    continue
                if stat.S_ISBLK(st.st_mode) and _dev_id(st.st_rdev) in ids:
                    reasons.append(f"{name} is in use as swap")
    except OSError:
        pass
    for dev_id in sorted(ids):
        try:
            holders = os.listdir(os.path.join(SYSFS_DEV_BLOCK, dev_id, "holders"))
        except OSError:
            continue
        if holders:
            reasons.append(f"{dev_id} is held by {', '.join(sorted(holders))}")
    return reasons


def image_busy_reasons(path: str) -> list[str]:
    """Why the regular file *path* is in use: loop devices backed by it that are busy.

    An image attached to a loop device whose filesystem is mounted must not be written
    behind the kernel's back. Matches by inode (``loop/backing_file`` may be a stale name).
    """
    try:
        st = os.stat(path)
    except OSError:
        return []
    reasons: list[str] = []
    try:
        names = os.listdir("/sys/class/block")
    except OSError:
        return []
    for name in sorted(names):
        try:
            with open(f"/sys/class/block/{name}/loop/backing_file") as f:
                backing = f.read().strip()
            with open(f"/sys/class/block/{name}/dev") as f:
                major, minor = (int(x) for x in f.read().split(":"))
            bst = os.stat(backing)
        except (OSError, ValueError):
            continue
        if (bst.st_dev, bst.st_ino) == (st.st_dev, st.st_ino):
            for why in busy_reasons(os.makedev(major, minor)):
                reasons.append(f"backs /dev/{name}, and {why}")
    return reasons


def _flock_holders(path: str) -> list[str]:
    """The fsproto processes (pid and command) holding the device lock on node *path*, found
    through a plain (not O_EXCL) read-only open; empty when none or not inspectable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        return lock_holders(fd)
    finally:
        os.close(fd)


class RawDevice(FileDescriptorDevice):
    """A block-device node. ``RawDevice(path, writable=False, force=False)``.

    Raises DeviceNotFound, NotADevice (not a block device), DeviceBusy (mounted, swap, holders,
    or opened O_EXCL by someone else; pass force=True to override), DeviceError.
    """

    _shrink_hint = "device shrank?"

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = False, force: bool = False) -> None:
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DeviceNotFound("no such device", device=path) from None
        except OSError as e:
            raise DeviceError(f"cannot stat: {e.strerror}", device=path) from e
        if not stat.S_ISBLK(st.st_mode):
            raise NotADevice("not a block device", device=path)
        if not force:
            reasons = busy_reasons(st.st_rdev)
            if reasons:
                raise DeviceBusy(f"in use ({'; '.join(reasons)}); pass --force to open anyway", device=path)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        if not force:
            flags |= os.O_EXCL
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno == errno.EBUSY:  # someone else holds it O_EXCL (or the kernel claims it)
                who = ", ".join(_flock_holders(path)) or "another opener"
                raise DeviceBusy(f"held exclusively by {who}; pass --force to open anyway", device=path) from e
            if e.errno in (errno.EROFS, errno.EACCES) and writable:  # read-only media or node
                raise DeviceError(f"cannot open for writing: {e.strerror}", device=path) from e
            raise DeviceError(f"cannot open: {e.strerror}", device=path) from e
        try:
            size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
            sector = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))[0]
        except OSError as e:
            os.close(fd)
            raise DeviceError(f"cannot query size: {e.strerror}", device=path) from e
        self._fd = fd
        self._rdev = st.st_rdev
        self._exclusive = not force
        super().__init__(path, sector, size // sector, read_only=not writable)

    @property
    def exclusive(self) -> bool:
        """True when opened O_EXCL (not forced)."""
        return self._exclusive

    @property
    def dev_id(self) -> str:
        """``major:minor`` of the node."""
        return _dev_id(self._rdev)

    def __str__(self) -> str:
        mode = "ro" if self._read_only else "rw"
        excl = ", excl" if self._exclusive else ", forced"
        return f"RawDevice({self._name} [{self.dev_id}], {self._num_blocks} x {self._block_size} B, {mode}{excl})"

    __repr__ = __str__
