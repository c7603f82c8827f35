"""ImageFile: a block device backed by a regular file (a disk image)."""

from __future__ import annotations

import os
import stat

from fsproto.blockdev.fdio import FileDescriptorDevice
from fsproto.errors import DeviceError, DeviceNotFound, GeometryError, NotADevice


def _check_block_size(block_size: int, path: str) -> None:
    # Checked before any arithmetic: a zero or odd size must be an error, not a ZeroDivisionError.
    if not isinstance(block_size, int) or block_size <= 0 or block_size & (block_size - 1):
        raise GeometryError(f"block size {block_size} is not a positive power of two", device=path)


class ImageFile(FileDescriptorDevice):
    """A regular file as a block device.

    ``ImageFile(path)`` opens an existing image (read-only unless ``writable=True``);
    :meth:`create` makes a new sparse one. The file size must be a multiple of *block_size*.
    """

    _shrink_hint = "image shrank?"

    def __init__(self, path: str | os.PathLike[str], *, block_size: int = 512, writable: bool = False) -> None:
        path = os.fspath(path)
        _check_block_size(block_size, path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DeviceNotFound("no such file", device=path) from None
        except OSError as e:
            raise DeviceError(f"cannot stat: {e.strerror}", device=path) from e
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise NotADevice(f"is {kind}; an image must be a regular file", device=path)
        if st.st_size % block_size:
            raise GeometryError(
                f"image size {st.st_size} is not a multiple of the block size {block_size}", device=path
            )
        try:
            self._fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        except OSError as e:
            raise DeviceError(f"cannot open: {e.strerror}", device=path) from e
        super().__init__(path, block_size, st.st_size // block_size, read_only=not writable)

    @classmethod
    def create(cls, path: str | os.PathLike[str], size: int, *, block_size: int = 512, overwrite: bool = False) -> "ImageFile":
        """Create a sparse image of *size* bytes and open it for writing."""
        path = os.fspath(path)
        _check_block_size(block_size, path)
        if size <= 0 or size % block_size:
            raise GeometryError(f"size {size} is not a positive multiple of the block size {block_size}", device=path)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise DeviceError("image already exists (pass overwrite=True to replace it)", device=path) from None
        except OSError as e:
            raise DeviceError(f"cannot create: {e.strerror}", device=path) from e
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return cls(path, block_size=block_size, writable=True)

