"""The FUSE adapter's public names; it lives in :mod:`fsproto.mount.adapter` (run by :mod:`fsproto.mount.daemon`)."""

from fsproto.mount.adapter import FsprotoOperations  # noqa: F401
from fsproto.mount.daemon import mount  # noqa: F401
