"""NbdBlockDevice: an export of any NBD server (nbdkit, qemu-nbd, ``fsproto serve``) as a block device.

The client is libnbd through its Python binding (``import nbd``; Debian's python3-libnbd, which
``tools/setup.sh`` links into the venv because it is not on PyPI). fsproto speaks no NBD itself.

Device specs (what :func:`fsproto.blockdev.open.open_device` hands here): the NBD URI standard
(https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md) as libnbd parses it:
``nbd://HOST[:PORT]/EXPORT``, ``nbd+unix:///EXPORT?socket=PATH`` (and ``nbds``/``nbds+unix``
with TLS). The empty export name is the server's default export.

Block size: the server's advertised minimum block size, at least 512; the export size must be a
multiple of it (as an image's must). Requests are split at the server's maximum block size
(libnbd itself refuses more than 64 MiB per command).

Limits: synchronous, one command at a time per device. A server that dies gives MediaError on
the next request (never a hang: its socket closes); a server that stops answering but keeps the
socket open blocks that request, as a stuck disk would.
"""

from __future__ import annotations

import errno
from typing import Any, Protocol

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import DeviceError, DeviceNotFound, GeometryError, MediaError, ReadOnlyError

NBD_SCHEMES = ("nbd://", "nbds://", "nbd+unix://", "nbds+unix://")
_LIBNBD_MAX_REQUEST = 32 << 20  # below libnbd's 64 MiB cap, and what nbdkit and qemu-nbd accept


def is_nbd_uri(spec: str) -> bool:
    """True when *spec* names an NBD export rather than a path."""
    return spec.startswith(NBD_SCHEMES)


class Helper(Protocol):
    """The server process behind a device, when fsproto started it (see fsproto.subproc.HelperProcess)."""

    def failure(self, wait_s: float = 0.0) -> str | None: ...

    def stop(self) -> None: ...


def _libnbd() -> Any:
    try:
        import nbd
    except ImportError:
        raise DeviceError("libnbd's Python binding (import nbd) is missing: install python3-libnbd and "
                          "run tools/setup.sh, which links it into the venv") from None
    return nbd


def _reason(e: Exception) -> str:
    """libnbd's message without the API-call prefix (``nbd_connect_uri: connect: ...``)."""
    text = getattr(e, "string", None) or str(e)
    return text.split(": ", 1)[1] if text.startswith("nbd_") and ": " in text else text


class NbdBlockDevice(BlockDevice):
    """The export at *uri*, read-only unless *writable*.

    *helper*, when given, is the server process fsproto started for this device (qemu-nbd for a
    container image): a failed request names its exit, and :meth:`close` stops and reaps it.
    Raises DeviceNotFound (no such export, no socket), DeviceError (refused, handshake failed),
    ReadOnlyError (writable asked of a read-only export), GeometryError.
    """

    def __init__(self, uri: str, *, writable: bool = False, name: str | None = None,
                 helper: Helper | None = None) -> None:
        nbd = _libnbd()
        self._nbd = nbd
        self._helper = helper
        name = name or uri
        h = nbd.NBD()
        h.set_handle_name("fsproto")
        try:
            h.connect_uri(uri)
            size = h.get_size()
            server_ro = h.is_read_only()
            min_block = h.get_block_size(nbd.SIZE_MINIMUM)
            max_block = h.get_block_size(nbd.SIZE_MAXIMUM)
            self._can_flush = h.can_flush()
            self._can_fua = h.can_fua()
            self._can_multi_conn = h.can_multi_conn()
        except nbd.Error as e:
            del h
            raise self._connect_error(uri, name, e) from None
        if writable and server_ro:
            raise ReadOnlyError("the NBD server exports it read-only", device=name)
        block_size = max(512, min_block)
        if size % block_size:
            raise GeometryError(f"export size {size} is not a multiple of the block size {block_size}", device=name)
        self._h = h
        self._max_request = min(_LIBNBD_MAX_REQUEST, max_block or _LIBNBD_MAX_REQUEST)
        self._max_request -= self._max_request % block_size
        self.uri = uri
        super().__init__(name, block_size, size // block_size, read_only=not writable)

    def _connect_error(self, uri: str, name: str, e: Exception) -> DeviceError:
        failure = self._helper.failure() if self._helper is not None else None
        if failure:
            return DeviceError(failure, device=name)
        reason = _reason(e)
        if getattr(e, "errno", None) == errno.ENOENT or "no export named" in reason:
            return DeviceNotFound(f"cannot connect: {reason}", device=name)
        return DeviceError(f"cannot connect to the NBD server: {reason}", device=name)

    @property
    def can_multi_conn(self) -> bool:
        """Whether the server promised multi-conn consistency (flush on one connection covers all)."""
        return self._can_multi_conn

    def _failed(self, what: str, lba: int | None, e: Exception) -> MediaError:
        # A lost connection to our own helper is most likely its death: name that, not the socket.
        failure = self._helper.failure(wait_s=1.0) if self._helper is not None else None
        if failure:
            return MediaError(f"{what} failed: {failure}", device=self._name, lba=lba)
        return MediaError(f"{what} failed: {_reason(e)}", device=self._name, lba=lba)

    def _read(self, lba: int, count: int) -> bytes:
        offset, n = lba * self._block_size, count * self._block_size
        try:
            if n <= self._max_request:
                return self._h.pread(n, offset)  # type: ignore[no-any-return]
            out = bytearray()
            while len(out) < n:
                out += self._h.pread(min(self._max_request, n - len(out)), offset + len(out))
            return bytes(out)
        except self._nbd.Error as e:
            raise self._failed("NBD read", lba, e) from None

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        offset = lba * self._block_size
        try:
            for start in range(0, len(view), self._max_request):
                self._h.pwrite(view[start : start + self._max_request], offset + start)
        except self._nbd.Error as e:
            raise self._failed("NBD write", lba, e) from None

    def _flush(self) -> None:
        if not self._can_flush:
            return
        try:
            self._h.flush()
        except self._nbd.Error as e:
            raise self._failed("NBD flush", None, e) from None

    def _close(self) -> None:
        try:
            try:
                self._h.shutdown()  # NBD_CMD_DISC: the server closes the export cleanly
            except self._nbd.Error:
                pass  # already dead: nothing left to tell it
            del self._h  # libnbd closes the socket when the handle goes
        finally:
            if self._helper is not None:
                self._helper.stop()
