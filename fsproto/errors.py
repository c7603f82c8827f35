"""One error hierarchy for all of fsproto, and the one errno table.

Families (shaped like pyfilesystem2's ``fs/errors.py``):

* :class:`DeviceError` -- block devices and the hardware under them;
* :class:`PartitionTableError` -- MBR/GPT tables that are corrupt or lie;
* :class:`FormatError` -- an on-disk structure is corrupt (names device, block, offset, struct);
* :class:`FsError` -- a filesystem operation cannot be done (not found, exists, full, bad name...);
* :class:`HardwareError` -- the hardware core refused or failed an access;
* :class:`UsageError` -- the caller asked for something that makes no sense.

Every error has one errno (:func:`errno_for`), used by the FUSE adapter, and one CLI exit
status (:func:`exit_status_for`). Not-found and exists errors also subclass the builtin
``FileNotFoundError`` / ``FileExistsError`` so ordinary ``except`` clauses work.
"""

from __future__ import annotations

import errno as _errno


class FsprotoError(Exception):
    """Base of every error fsproto raises on purpose.

    ``device``, ``lba``, ``block`` and ``offset`` are optional context; :meth:`__str__` puts
    them in front of the message so one line says where the problem is.
    """

    errno: int = _errno.EIO

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        lba: int | None = None,
        block: int | None = None,
        offset: int | None = None,
        struct: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.device = device
        self.lba = lba
        self.block = block
        self.offset = offset
        self.struct = struct

    def __str__(self) -> str:
        where = []
        if self.device is not None:
            where.append(str(self.device))
        if self.lba is not None:
            where.append(f"lba {self.lba}")
        if self.block is not None:
            where.append(f"block {self.block}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.struct is not None:
            where.append(self.struct)
        return f"{', '.join(where)}: {self.message}" if where else self.message


class UsageError(FsprotoError):
    """The request itself is wrong (bad option, bad argument combination)."""

    errno = _errno.EINVAL


# --- block devices -------------------------------------------------------------------------


class DeviceError(FsprotoError):
    """A block device could not be opened, read or written."""


class DeviceNotFound(DeviceError, FileNotFoundError):
    errno = _errno.ENOENT


class NotADevice(DeviceError):
    """The path is neither a regular file nor a block device (a directory, a socket...)."""

    errno = _errno.ENODEV


class GeometryError(DeviceError):
    """Sizes do not fit: image size not a multiple of the block size, bad block size."""

    errno = _errno.EINVAL


class OutOfRange(DeviceError):
    """A read or write past the end of the device."""

    errno = _errno.EINVAL


class ReadOnlyError(DeviceError):
    """A write to a device (or filesystem) opened read-only."""

    errno = _errno.EROFS


class DeviceBusy(DeviceError):
    """The device is mounted, has holders, or another opener holds it O_EXCL."""

    errno = _errno.EBUSY


class MediaError(DeviceError):
    """The device reported an I/O error (real or injected)."""

    errno = _errno.EIO


class PartitionTableError(FsprotoError):
    """A partition table is corrupt or lies (entries past the end, overlaps, bad CRC)."""


# --- on-disk formats -----------------------------------------------------------------------


class FormatError(FsprotoError):
    """An on-disk structure is corrupt; always names the block and offset when known."""

    errno = _errno.EIO


class UnknownFormat(FormatError):
    """No format (or not the asked-for one) recognises the device."""

    errno = _errno.EINVAL


# --- filesystem operations -------------------------------------------------------------------


class FsError(FsprotoError):
    """A filesystem operation that cannot be done as asked."""

    errno = _errno.EIO


class NotFound(FsError, FileNotFoundError):
    errno = _errno.ENOENT


class AlreadyExists(FsError, FileExistsError):
    errno = _errno.EEXIST


class NoSpace(FsError):
    """Disk full, or directory full."""

    errno = _errno.ENOSPC


class InvalidName(FsError):
    """A name the format cannot hold (characters, dots, case rules)."""

    errno = _errno.EINVAL


class NameTooLong(InvalidName):
    errno = _errno.ENAMETOOLONG


class FileTooBig(FsError):
    errno = _errno.EFBIG


class InvalidOperation(FsError):
    """The format cannot do this to this file (e.g. change LRECL of a file with records)."""

    errno = _errno.EINVAL


class NotSupported(FsError):
    errno = _errno.EOPNOTSUPP


class NotPermitted(FsError):
    """The format has no such kind of object: directories on a flat format, hard or symbolic
    links, device nodes and FIFOs. EPERM, as mkdir(2), link(2), symlink(2), mknod(2) and the
    kernel's vfat answer (docs/errno.md)."""

    errno = _errno.EPERM


class ExchangeNotSupported(NotSupported):
    """The format cannot swap two names atomically; renameat2(2) documents EINVAL for that."""

    errno = _errno.EINVAL


class IsADirectory(FsError, IsADirectoryError):
    errno = _errno.EISDIR


class NotADirectory(FsError, NotADirectoryError):
    errno = _errno.ENOTDIR


class DirectoryNotEmpty(FsError):
    errno = _errno.ENOTEMPTY


class NoSuchAttribute(FsError):
    errno = _errno.ENODATA


class FsReadOnly(FsError):
    errno = _errno.EROFS


# --- hardware ------------------------------------------------------------------------------


class HardwareError(FsprotoError):
    """The hardware core refused or failed an access."""


class AlignmentError(HardwareError):
    errno = _errno.EINVAL


class AccessDenied(HardwareError, PermissionError):
    """No permission (no CAP_SYS_ADMIN, kernel lockdown, read-only mapping)."""

    errno = _errno.EPERM


class DeviceOwned(HardwareError):
    """A kernel driver owns the device, or it backs a mounted filesystem; pass force=True."""

    errno = _errno.EBUSY


class ControllerError(HardwareError):
    """A storage controller returned an error status or timed out."""


class HardwareNotFound(HardwareError, FileNotFoundError):
    """No such device, BAR, resource file or register path (e.g. no /dev/mem on this kernel)."""

    errno = _errno.ENOENT


class RegionOutOfRange(HardwareError):
    """An access (or a window) that does not fit inside a mapped region."""

    errno = _errno.EINVAL


class UnbackedMemory(HardwareError):
    """Memory with no usable physical page: not present, swapped, or the shared zero page."""

    errno = _errno.EFAULT


class QtestError(HardwareError):
    """QEMU's qtest device model failed: did not start, died, timed out or rejected a command."""


# --- test harnesses ------------------------------------------------------------------------


class HarnessError(FsprotoError):
    """A test harness (the cmsfs-fuse reference in s390x emulation) could not do its job.

    ``console_tail`` holds the last lines of the guest console when a guest was involved;
    the message itself stays one line.
    """

    def __init__(self, message: str, *, console_tail: str = "", **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.console_tail = console_tail


class HarnessSetupError(HarnessError):
    """Preparing the harness failed: a package is missing, a download or unpack failed."""


class GuestError(HarnessError):
    """The emulated guest did not boot, died, or did not finish within its time limit."""

    errno = _errno.ETIMEDOUT


class ReferenceRefused(HarnessError):
    """The reference driver refused to mount a disk (or died while mounting it)."""


# --- FUSE mounts ---------------------------------------------------------------------------


class MountError(FsprotoError):
    """A FUSE mount could not be set up or taken down (mount point, /dev/fuse, daemon)."""

    errno = _errno.EIO


# --- storage controllers (user-space NVMe / AHCI drivers) ---------------------------------


class CommandError(ControllerError):
    """A controller completed a command with an error status.

    ``status`` is the decoded status (NVMe: SCT/SC/DNR; AHCI: ATA status and error bytes),
    ``opcode`` the command's opcode; the message names both.
    """

    def __init__(self, message: str, *, opcode: int | None = None, status: dict[str, int] | None = None,
                 **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.opcode = opcode
        self.status = dict(status or {})


class LbaOutOfRange(CommandError, OutOfRange):
    """The controller refused an LBA past the end of the namespace/disk (NVMe SC 80h, ATA IDNF)."""

    errno = _errno.EINVAL


class CommandTimeout(ControllerError):
    """A controller did not complete a command, or did not change state, within its time limit."""

    errno = _errno.ETIMEDOUT


def errno_for(exc: BaseException) -> int:
    """The errno a syscall should fail with for *exc* (used by the FUSE adapter)."""
    if isinstance(exc, FsprotoError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return _errno.EIO


# CLI exit statuses, e2fsprogs style (e2fsck.h): fsck uses the bitmask; other commands use
# 0 / OPERATIONAL / USAGE.
EXIT_OK = 0
EXIT_FIXED = 1
EXIT_UNCORRECTED = 4
EXIT_OPERATIONAL = 8
EXIT_USAGE = 16


def exit_status_for(exc: BaseException) -> int:
    """The CLI exit status for an error that ended a command."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, FormatError):
        return EXIT_UNCORRECTED
    return EXIT_OPERATIONAL


# --- host files (the other end of get/put) ---------------------------------------------------


class HostFileError(FsprotoError):
    """A file or directory on the host (what get writes, what put reads) could not be used.

    Carries the ``OSError``'s errno; the message names the host path and what was attempted.
    """

    def __init__(self, message: str, *, errno: int | None = None, **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        if errno:
            self.errno = errno
