"""Actions behind ``fsproto map`` and ``fsproto explore``: open read-only, ask the format for
its block map (and outline), resolve ``--file``. Nothing here knows an on-disk layout."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from fsproto import formats
from fsproto.errors import NotFound
from fsproto.formats.blockmap import BlockMap
from fsproto.rawdev import BlockDevice, open_device


@dataclass
class Mapped:
    dev: BlockDevice
    fmt: formats.Format
    bmap: BlockMap


@contextlib.contextmanager
def open_map(device: str, *, fmt_name: str = "auto", force: bool = False) -> Iterator[Mapped]:
    """*device* opened read-only (shared lock unless *force*) with its format's block map.

    Raises UnknownFormat, FormatError, NotSupported (a format without block_map), DeviceError.
    """
    dev = open_device(device, writable=False, force=force)  # takes the shared lock itself
    try:
        fmt = formats.detect(dev, fmt_name)
        yield Mapped(dev, fmt, fmt.block_map(dev))
    finally:
        dev.close()


def resolve_owner(bmap: BlockMap, name: str) -> str:
    """The map's owner named *name*: exact, without a leading ``/``, or ignoring case. Raises NotFound."""
    owners = bmap.owners() + [o for e in bmap.extents if e.owner for o in (e.owner,)]
    for want in (name, name.lstrip("/"), "/" + name.lstrip("/")):
        if want in owners:
            return want
    folded = {o.lower().lstrip("/"): o for o in owners}
    hit = folded.get(name.lower().lstrip("/"))
    if hit is None:
        shown = ", ".join(bmap.owners()[:8]) + (", ..." if len(bmap.owners()) > 8 else "")
        raise NotFound(f"{name}: no file of that name on the map (files: {shown or 'none'})", device=bmap.device)
    return hit
