"""The NBD operations over a block device, and opening the device ``fsproto serve`` exports.

NBD addresses bytes; a :class:`BlockDevice` addresses blocks. :class:`Export` maps one onto the
other: aligned requests go straight through; an unaligned read reads the covering blocks, an
unaligned write is a read-modify-write of its first and last block (nbdkit serialises all
requests, see :mod:`fsproto.serve.plugin`, so no other request sees the half-done block).

Mapping (nbdkit-plugin(3) names): ``pread``/``pwrite`` -> read/write; FUA -> write then
``flush()``; ``flush`` -> ``flush()``; ``zero`` -> a hole punched or a range zeroed in the file
(an image served as it is: fallocate) or else zeros written; ``trim`` -> a hole punched (image
file) or nothing (NBD makes trim advisory: after it the bytes are unspecified, so doing nothing
is correct, and an overlay or a fault injector never lets a trim bypass it).

Fault specs (``--fault``), comma-separated: ``cut-after-writes=N``, ``cut-after-blocks=N``,
``torn-bytes=K``, ``read-error=LBA``, ``write-error=LBA`` (repeatable), ``after-cut=drop|error``;
see :class:`~fsproto.blockdev.fault.FaultInjectingDevice` for what each means.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from dataclasses import dataclass
from typing import Any

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.fault import FaultInjectingDevice
from fsproto.blockdev.image import ImageFile
from fsproto.blockdev.open import open_device
from fsproto.blockdev.raw import RawDevice
from fsproto.blockdev.trace import TracingDevice
from fsproto.errors import DeviceError, MediaError, NotSupported, UsageError

ZERO_CHUNK = 1 << 20  # zeros are written in pieces this big: bounded memory for a zero of the whole disk
MAX_NBD_REQUEST = 32 << 20  # what the plugin advertises as the maximum block size

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """Linux fallocate(2) (os has only posix_fallocate); False when the file system cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, mode, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


class Export:
    """*dev* as NBD sees it: bytes, with flush, FUA, zero and trim. Owns *dev* (close closes it)."""

    def __init__(self, dev: BlockDevice, *, name: str = "", description: str = "") -> None:
        self.dev = dev
        # nbdkit serialises requests, but the plugin's stop thread closes the device from outside
        # them: every operation holds this lock, so close never lands inside a request.
        self.lock = threading.Lock()
        self.name = name
        self.description = description or str(dev)
        self._bs = dev.block_size
        # Only an image served as it is may have holes punched: below an overlay, fault injector
        # or trace the file is not what the client sees.
        self._punch_fd = dev.fileno() if type(dev) is ImageFile and not dev.read_only else None
        # An image or node served as it is is read straight into nbdkit's buffer (preadv): no
        # bytes object, no copy. nbdkit has already bounds-checked the request.
        self._read_fd = dev.fileno() if type(dev) in (ImageFile, RawDevice) else None

    @property
    def size(self) -> int:
        return self.dev.size

    @property
    def read_only(self) -> bool:
        return self.dev.read_only

    @property
    def block_size(self) -> int:
        return self._bs

    @property
    def can_fast_zero(self) -> bool:
        return self._punch_fd is not None

    def pread_into(self, buf: Any, offset: int) -> None:
        """Fill *buf* (a writable buffer) with the bytes at *offset*."""
        n = len(buf)
        bs = self._bs
        if self._read_fd is not None:
            if self.dev.closed:  # its descriptor number may already belong to another file
                raise DeviceError("device is closed (the server is stopping)", device=self.dev.name)
            try:
                got = os.preadv(self._read_fd, [buf], offset)
            except OSError as e:
                raise MediaError(f"read failed: {e.strerror}", device=self.dev.name, lba=offset // bs) from e
            if got != n:
                raise MediaError(f"short read ({got} of {n} bytes): image shrank?", device=self.dev.name,
                                 lba=offset // bs)
            return
        if offset % bs == 0 and n % bs == 0:
            buf[:] = self.dev.read(offset // bs, n // bs)
            return
        first = offset // bs
        last = (offset + n + bs - 1) // bs
        data = memoryview(self.dev.read(first, last - first))
        skip = offset - first * bs
        buf[:] = data[skip : skip + n]

    def pwrite(self, buf: Any, offset: int, *, fua: bool = False) -> None:
        """Write *buf* at *offset*; with *fua* it is durable when this returns."""
        data = memoryview(buf).cast("B")
        bs = self._bs
        n = len(data)
        if n and (offset % bs or n % bs):
            first = offset // bs
            last = (offset + n + bs - 1) // bs
            head = bytearray(self.dev.read(first, 1))
            block = head if last - first == 1 else head + bytearray((last - first - 2) * bs) + self.dev.read(last - 1, 1)
            skip = offset - first * bs
            block[skip : skip + n] = data
            self.dev.write(first, block)
        elif n:
            self.dev.write(offset // bs, data)
        if fua:
            self.dev.flush()

    def flush(self) -> None:
        self.dev.flush()

    def zero(self, count: int, offset: int, *, may_trim: bool = False, fast: bool = False, fua: bool = False) -> None:
        """Make *count* bytes at *offset* read back as zeros.

        Raises NotSupported when *fast* is asked and only writing zeros could do it (the client
        then knows not to expect a quick zero, per the NBD spec's NBD_CMD_FLAG_FAST_ZERO).
        """
        if self._punch_fd is not None and count:
            mode = (_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE) if may_trim else _FALLOC_FL_ZERO_RANGE
            if _fallocate(self._punch_fd, mode, offset, count):
                if fua:
                    self.dev.flush()
                return
        if fast:
            raise NotSupported("no fast zero on this device", device=self.dev.name)
        zeros = bytes(min(ZERO_CHUNK, count))
        done = 0
        while done < count:
            step = min(ZERO_CHUNK, count - done)
            self.pwrite(zeros[:step], offset + done)
            done += step
        if fua:
            self.dev.flush()

    def trim(self, count: int, offset: int, *, fua: bool = False) -> None:
        """Discard whole blocks inside the range where that is safe (see the module docstring)."""
        if self._punch_fd is not None:
            bs = self._bs
            start = -(-offset // bs) * bs
            end = (offset + count) // bs * bs
            if end > start:
                _fallocate(self._punch_fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, start, end - start)
        if fua:
            self.dev.flush()

    def close(self) -> None:
        """Flush and close the device (idempotent)."""
        self.dev.close()


# -- opening the served device -------------------------------------------------------------------
_FAULT_KEYS = {"cut-after-writes": "cut_after_writes", "cut-after-blocks": "cut_after_blocks",
               "torn-bytes": "torn_bytes"}


def parse_fault_spec(spec: str) -> dict[str, Any]:
    """``cut-after-writes=5,read-error=100`` -> FaultInjectingDevice keyword arguments.

    Raises UsageError for an unknown key or a bad number.
    """
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--fault: {item!r} is not KEY=VALUE")
        if key == "after-cut":
            if value not in ("drop", "error"):
                raise UsageError(f"--fault: after-cut must be drop or error, not {value!r}")
            kwargs["after_cut"] = value
            continue
        try:
            number = int(value, 0)
        except ValueError:
            raise UsageError(f"--fault: {key} needs a number, not {value!r}") from None
        if number < 0:
            raise UsageError(f"--fault: {key} must not be negative")
        if key in _FAULT_KEYS:
            kwargs[_FAULT_KEYS[key]] = number
        elif key in ("read-error", "write-error"):
            kwargs.setdefault(key.replace("-", "_") + "s", []).append(number)
        else:
            known = ", ".join([*_FAULT_KEYS, "read-error", "write-error", "after-cut"])
            raise UsageError(f"--fault: unknown key {key!r} (known: {known})")
    return kwargs


@dataclass(frozen=True)
class ServeConfig:
    """What ``fsproto serve`` was asked to serve (passed to the plugin as key=value pairs)."""

    device: str
    writable: bool = True
    force: bool = False
    overlay: str | None = None
    fault: str | None = None
    trace: str | None = None
    export: str = ""

    def as_params(self) -> list[str]:
        params = [f"device={self.device}", f"writable={int(self.writable)}", f"force={int(self.force)}",
                  f"export={self.export}"]
        params += [f"{k}={v}" for k, v in (("overlay", self.overlay), ("fault", self.fault), ("trace", self.trace))
                   if v is not None]
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "ServeConfig":
        return cls(device=params["device"], writable=params.get("writable", "1") == "1",
                   force=params.get("force", "0") == "1", overlay=params.get("overlay"),
                   fault=params.get("fault"), trace=params.get("trace"), export=params.get("export", ""))


def open_export(config: ServeConfig) -> Export:
    """Open, wrap and lock the device as *config* says. Raises what open_device raises, DeviceBusy."""
    fault = parse_fault_spec(config.fault) if config.fault else None
    dev = open_device(config.device, writable=config.writable, force=config.force, block_size=None,
                      overlay=config.overlay)
    try:
        # open_device took the device lock like a mount's: one writer, or readers only.
        if fault is not None:
            dev = FaultInjectingDevice(dev, **fault)
        if config.trace is not None:
            dev = TracingDevice(dev, config.trace)
    except BaseException:
        dev.close()
        raise
    return Export(dev, name=config.export, description=f"fsproto {config.device}")
