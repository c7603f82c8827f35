"""EwfDevice: a forensic EWF image (E01, Ex01 and their segment files), read-only, through libewf.

libewf (``pyewf``, from the ``libewf-python`` wheel on PyPI) decodes the format: chunks, zlib
compression, segment files ``.E01 .E02 ...`` found by :func:`pyewf.glob` from the first one.
fsproto parses no EWF structure itself. Evidence is never written: EWF images always open
read-only (``--overlay`` keeps writes beside them, as for any device).

The wheel's libewf is built without zlib *writing*, so images are made with ``ewfacquire``
(Debian ewf-tools) in the tests. The block size is the image's bytes-per-sector (512 as a rule).

Limits: a segment missing or corrupt is an error at open (libewf checks the segment table);
a chunk whose checksum fails is a MediaError at the read that needs it.
"""

from __future__ import annotations

from typing import Any

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import DeviceError, GeometryError, MediaError


def _pyewf() -> Any:
    try:
        import pyewf
    except ImportError:
        raise DeviceError("EWF (E01) images need libewf-python: pip install libewf-python "
                          "(tools/setup.sh installs it)") from None
    return pyewf


def _reason(e: Exception) -> str:
    """libewf's innermost message (it chains 'func: what.' for each layer)."""
    parts = [p.strip() for p in str(e).split(". ") if p.strip()]
    return parts[-1].rstrip(".") if parts else str(e)


class EwfDevice(BlockDevice):
    """The media of the EWF image whose first segment is *path*, read-only.

    Raises DeviceError (libewf refused the image: missing segment, corrupt header), GeometryError.
    """

    def __init__(self, path: str) -> None:
        pyewf = _pyewf()
        try:
            segments = pyewf.glob(path)
            handle = pyewf.handle()
            handle.open(segments)
        except (OSError, MemoryError, IOError) as e:
            raise DeviceError(f"libewf cannot open the image: {_reason(e)}", device=path) from None
        size = handle.get_media_size()
        block_size = handle.get_bytes_per_sector() or 512
        if size % block_size:
            handle.close()
            raise GeometryError(f"media size {size} is not a multiple of {block_size}-byte sectors", device=path)
        self._handle = handle
        self.segments = tuple(segments)
        self.container = "ewf"
        super().__init__(path, block_size, size // block_size, read_only=True)

    def _read(self, lba: int, count: int) -> bytes:
        n = count * self._block_size
        try:
            data: bytes = self._handle.read_buffer_at_offset(n, lba * self._block_size)
        except (OSError, IOError) as e:
            raise MediaError(f"libewf read failed: {_reason(e)}", device=self._name, lba=lba) from None
        if len(data) != n:
            raise MediaError(f"short read ({len(data)} of {n} bytes) from the EWF image", device=self._name, lba=lba)
        return data

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:  # pragma: no cover - read-only
        raise AssertionError("EwfDevice is read-only; the base class refuses writes")

    def _close(self) -> None:
        self._handle.close()
