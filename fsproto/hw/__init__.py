"""fsproto's hardware core: regions and backends, DMA memory, PCI, register maps, the REPL.

Layers (lowest first): :mod:`~fsproto.hw.backends` (mmap, qtest, fake) ->
:mod:`~fsproto.hw.region` (checked exact-width peek/poke) -> :mod:`~fsproto.hw.regs` and
:mod:`~fsproto.hw.regmaps` (declared registers) -> :mod:`~fsproto.hw.pci` with
:mod:`~fsproto.hw.safety` -> :mod:`~fsproto.hw.vocab` (the REPL words) -> :mod:`~fsproto.hw.repl`.
DMA memory (:mod:`~fsproto.hw.memory`) hands out buffers with a ``device_addr``.
Facts behind the design: ``shared/specs/hardware.md``.
"""

from fsproto.hw.memory import DmaBuffer, HostBuffer, PageInfo
from fsproto.hw.pci import Bar, Capability, PciFunction, SysfsPci
from fsproto.hw.region import Region
from fsproto.hw.regs import F, Field, RegMap, Register, Regs, RegValue
from fsproto.hw.vocab import (
    free, malloc, mmap, mpin, munpin, pagemap, pci, r8, r16, r32, r64, regs, vir2phys, w8, w16, w32, w64,
)

__all__ = [
    "Bar", "Capability", "DmaBuffer", "F", "Field", "HostBuffer", "PageInfo", "PciFunction", "RegMap", "RegValue",
    "Region", "Register", "Regs", "SysfsPci", "free", "malloc", "mmap", "mpin", "munpin", "pagemap", "pci",
    "r8", "r16", "r32", "r64", "regs", "vir2phys", "w8", "w16", "w32", "w64",
]
