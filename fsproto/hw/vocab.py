"""The bring-up vocabulary: the words the seed's Scheme environment had, as Python functions.

``malloc free mpin munpin vir2phys pagemap mmap r8 r16 r32 r64 w8 w16 w32 w64 pci regs`` --
what ``fsproto repl`` preloads and what ``fsproto.hw`` exports. Every word is a thin layer
over :mod:`fsproto.hw.region`, :mod:`~fsproto.hw.memory`, :mod:`~fsproto.hw.pci` and
:mod:`~fsproto.hw.regs`; the safety checks happen here for paths (``mmap`` of a sysfs
``resourceN`` or ``/dev/uioN`` of a device a kernel driver owns is refused unless ``force``).
"""

from __future__ import annotations

import os
import stat

from fsproto.errors import UsageError
from fsproto.hw import safety
from fsproto.hw.backends.base import DryRunFacade
from fsproto.hw.backends.mapped import MappedBackend
from fsproto.hw.memory import free, malloc, mpin, munpin, pagemap, vir2phys
from fsproto.hw.pci import SysfsPci, devices
from fsproto.hw.regmaps import AHCI_HBA, AHCI_PORT, NVME, PCI_CONFIG
from fsproto.hw.region import Region
from fsproto.hw.regs import RegMap, Regs

__all__ = [
    "free", "malloc", "mmap", "mpin", "munpin", "pagemap", "pci", "r8", "r16", "r32", "r64",
    "regs", "vir2phys", "w8", "w16", "w32", "w64",
]

REGMAPS: dict[str, RegMap] = {"nvme": NVME, "ahci": AHCI_HBA, "ahci-port": AHCI_PORT, "pci": PCI_CONFIG}


def mmap(
    path: str | None = None,
    size: int | None = None,
    offset: int = 0,
    *,
    writable: bool = False,
    force: bool = False,
    dry_run: bool = False,
    big_endian: bool = False,
    split64: bool = False,
    uio_map: int | None = None,
) -> Region:
    """Map *path* (anonymous memory when None) and return a checked :class:`Region`.

    Read-only unless *writable*. With *dry_run*, stores are logged and never reach the mapping
    (the file is opened read-only). A device's BAR (sysfs ``resourceN``) or ``/dev/uioN`` is
    refused while a kernel driver or a mount owns the device, and a writable mapping
    of a mounted block device is refused, unless *force*.
    *offset* must be 8-byte aligned (so natural alignment in the window is natural on the bus).
    Raises DeviceOwned, HardwareNotFound, AccessDenied, AlignmentError, RegionOutOfRange, UsageError.
    """
    if path is not None:
        bdf = safety.pci_device_of_path(path)
        if bdf is not None:
            safety.check(bdf, f"map {path} of", force=force)
        elif writable and os.path.exists(path) and stat.S_ISBLK(os.stat(path).st_mode):
            # A writable mapping of a mounted disk would bypass the filesystem on it.
            safety.check_block_device(path, "map for writing", force=force)
    backend = MappedBackend(path, size=size, offset=offset, writable=writable and not dry_run, uio_map=uio_map)
    mapped = DryRunFacade(backend) if writable and dry_run else backend
    try:
        return Region(
            mapped,
            offset=backend.skew,
            size=backend.size - backend.skew,
            writable=writable,
            dry_run=dry_run,
            big_endian=big_endian,
            split64=split64,
            name=path if path and not offset else (f"{path}+{offset:#x}" if path else None),
            owns_backend=True,
        )
    except BaseException:
        backend.close()
        raise


def r8(region: Region, offset: int) -> int:
    """One 8-bit load (see :class:`Region` for what it raises)."""
    return region.r8(offset)


def r16(region: Region, offset: int) -> int:
    return region.r16(offset)


def r32(region: Region, offset: int) -> int:
    return region.r32(offset)


def r64(region: Region, offset: int) -> int:
    return region.r64(offset)


def w8(region: Region, offset: int, value: int) -> None:
    """One 8-bit store (see :class:`Region` for what it raises)."""
    region.w8(offset, value)


def w16(region: Region, offset: int, value: int) -> None:
    region.w16(offset, value)


def w32(region: Region, offset: int, value: int) -> None:
    region.w32(offset, value)


def w64(region: Region, offset: int, value: int) -> None:
    region.w64(offset, value)


def pci(bdf: str | None = None, **options: object) -> SysfsPci | list[SysfsPci]:
    """``pci()`` lists this machine's PCI functions; ``pci("00:02.0", writable=True, ...)`` opens one.

    Raises HardwareNotFound, DeviceOwned (writable config of an owned device), UsageError.
    """
    if bdf is None:
        return devices()
    return SysfsPci(bdf, **options)  # type: ignore[arg-type]


def regs(region: Region, regmap: str | RegMap = "nvme", base: int = 0) -> Regs:
    """Bind a register map (``nvme``, ``ahci``, ``ahci-port``, ``pci`` or a RegMap) to *region*.

    Raises UsageError for an unknown name, RegionOutOfRange when it does not fit.
    """
    if isinstance(regmap, str):
        try:
            regmap = REGMAPS[regmap]
        except KeyError:
            raise UsageError(f"unknown register map {regmap!r}; known: {', '.join(REGMAPS)}") from None
    return regmap.bind(region, base)
