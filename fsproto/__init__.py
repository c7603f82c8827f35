"""fsproto: a user-space filesystem prototyping toolkit.

Layers, each looking only down: :mod:`fsproto.hw` (peek/poke, mmap, PCI, drivers) ->
:mod:`fsproto.rawdev` (block devices) -> :mod:`fsproto.formats` (on-disk formats behind
:class:`fsproto.vfs.Filesystem`) -> :mod:`fsproto.mount.adapter` and :mod:`fsproto.cli`.
"""

__version__ = "0.1.0"
