"""Backends behind :class:`fsproto.hw.region.Region`: mmap, QEMU qtest, in-process fake."""

from fsproto.hw.backends.base import Backend
from fsproto.hw.backends.fake import FakeBackend
from fsproto.hw.backends.mapped import MappedBackend

__all__ = ["Backend", "FakeBackend", "MappedBackend"]
