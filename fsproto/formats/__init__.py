"""Format registry: formats are found through the ``fsproto.formats`` entry-point group.

The built-in formats register the same way (see ``pyproject.toml``), so a plugin in another
package is a peer of CMS.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from fsproto.errors import UnknownFormat, UsageError
from fsproto.formats.base import Format, FsckReport, Problem, Progress
from fsproto.rawdev import BlockDevice

__all__ = ["Format", "FsckReport", "Problem", "Progress", "available", "get", "detect"]

log = logging.getLogger(__name__)

_cache: dict[str, Format] | None = None


def available() -> dict[str, Format]:
    """Every registered format by name."""
    global _cache
    if _cache is None:
        found: dict[str, Format] = {}
        for ep in entry_points(group="fsproto.formats"):
            try:
                fmt = ep.load()
            except Exception as e:  # a broken plugin must not take the CLI down with it
                log.warning("format plugin %s (%s) failed to load: %s", ep.name, ep.value, e)
                continue
            if not isinstance(fmt, Format):
                log.warning("format plugin %s (%s) is not a fsproto Format", ep.name, ep.value)
                continue
            found[ep.name] = fmt
        _cache = found
    return _cache


def get(name: str) -> Format:
    formats = available()
    try:
        return formats[name]
    except KeyError:
        raise UsageError(f"unknown format {name!r}; known: {', '.join(sorted(formats)) or 'none'}") from None


def detect(dev: BlockDevice, name: str = "auto") -> Format:
    """The format named, or with ``auto`` the one format whose probe matches."""
    if name != "auto":
        return get(name)
    matches = [f for f in available().values() if f.probe(dev)]
    if not matches:
        raise UnknownFormat("no known format recognises this device", device=dev.name)
    if len(matches) > 1:
        names = ", ".join(f.name for f in matches)
        raise UsageError(f"{dev.name}: several formats match ({names}); pass --format")
    return matches[0]
