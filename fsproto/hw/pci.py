"""PCI functions: config space, capability walk, BARs, decode/bus-master enable, driver binding.

:class:`PciFunction` holds what only needs config space (works over sysfs and over QEMU qtest);
:class:`SysfsPci` adds the Linux sysfs parts: ``resource`` (BAR list), ``resourceN`` mapping,
``driver_override``/bind/unbind. Every mapping, config write and rebind of a sysfs device goes
through :func:`fsproto.hw.safety.check` first (refused while a kernel driver or a mount owns it,
unless ``force``); ``dry_run`` logs writes instead of doing them.

References: Linux ``Documentation/PCI/sysfs-pci.rst``, ``drivers/pci/pci-sysfs.c``
(hardware.md 2.4), ``include/uapi/linux/pci_regs.h``. Config reads go through ``pread`` of exactly
the access width, which the kernel turns into one sized config cycle per aligned unit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fsproto.errors import AccessDenied, FormatError, HardwareError, HardwareNotFound, UsageError
from fsproto.hw import safety
from fsproto.hw.backends.base import Backend, DryRunFacade
from fsproto.hw.backends.mapped import MappedBackend, os_error
from fsproto.hw.regmaps.pci import CAP_NAMES, EXT_CAP_NAMES, PCI_CONFIG
from fsproto.hw.region import Region
from fsproto.hw.regs import Regs

IORESOURCE_IO, IORESOURCE_MEM, IORESOURCE_PREFETCH = 0x100, 0x200, 0x2000
IORESOURCE_MEM_64, IORESOURCE_DISABLED, IORESOURCE_UNSET = 0x100000, 0x10000000, 0x20000000

_BDF = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


def normalize_bdf(bdf: str) -> str:
    """``00:02.0`` -> ``0000:00:02.0``. Raises UsageError for something that is not a BDF."""
    m = _BDF.match(bdf.strip())
    if not m:
        raise UsageError(f"{bdf!r} is not a PCI address (domain:bus:device.function, e.g. 0000:00:02.0)")
    return f"{(m.group(1) or '0000').lower()}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"


@dataclass(frozen=True)
class Capability:
    id: int
    offset: int
    extended: bool = False

    @property
    def name(self) -> str:
        table = EXT_CAP_NAMES if self.extended else CAP_NAMES
        return table.get(self.id, f"{'ext-' if self.extended else ''}cap-{self.id:#x}")

    def __str__(self) -> str:
        return f"[{self.offset:#05x}] {self.name} ({self.id:#04x})"

    __repr__ = __str__


@dataclass(frozen=True)
class Bar:
    """One BAR from sysfs ``resource`` (or from sizing over qtest)."""

    index: int
    start: int
    size: int
    flags: int

    @property
    def is_io(self) -> bool:
        return bool(self.flags & IORESOURCE_IO)

    @property
    def is_64bit(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM_64)

    @property
    def prefetchable(self) -> bool:
        return bool(self.flags & IORESOURCE_PREFETCH)

    def __str__(self) -> str:
        kind = "io" if self.is_io else ("mem64" if self.is_64bit else "mem32")
        pf = ", prefetchable" if self.prefetchable else ""
        return f"BAR{self.index}: {self.start:#x} size {self.size:#x} ({kind}{pf})"

    __repr__ = __str__


class SysfsConfigBackend(Backend):
    """Config space through ``/sys/bus/pci/devices/BDF/config``: pread/pwrite of exactly the width."""

    def __init__(self, path: str, *, writable: bool) -> None:
        self.name = path
        self.writable = writable
        try:
            self.size = os.stat(path).st_size
            self._fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        except OSError as e:
            raise os_error(e, path, "open config space") from e

    def load(self, offset: int, width: int) -> int:
        try:
            data = os.pread(self._fd, width, offset)
        except OSError as e:
            raise os_error(e, self.name, f"config read at {offset:#x}") from e
        if len(data) != width:
            # Unprivileged readers only get the first 64 bytes (sysfs-pci.rst).
            raise AccessDenied("config space past 64 bytes needs root", device=self.name, offset=offset)
        return int.from_bytes(data, "little")

    def store(self, offset: int, width: int, value: int) -> None:
        try:
            os.pwrite(self._fd, value.to_bytes(width, "little"), offset)
        except OSError as e:
            raise os_error(e, self.name, f"config write at {offset:#x}") from e

    def read_bytes(self, offset: int, n: int) -> bytes:
        try:
            return os.pread(self._fd, n, offset)
        except OSError as e:
            raise os_error(e, self.name, "config read") from e

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PciFunction:
    """A PCI function seen through its config space (a Region over any config backend)."""

    def __init__(self, bdf: str, config: Region) -> None:
        self.bdf = bdf
        self.config = config
        self.regs: Regs = PCI_CONFIG.bind(config)

    @property
    def vendor_id(self) -> int:
        return self.config.r16(0x00)

    @property
    def device_id(self) -> int:
        return self.config.r16(0x02)

    @property
    def class_code(self) -> int:
        """Class, subclass, prog-if as one 24-bit number (0x010802 = NVMe)."""
        return self.config.r32(0x08) >> 8

    def capabilities(self) -> list[Capability]:
        """Walk the standard list (from CAP_PTR) and, when config space is 4 KiB, the extended list.

        Raises FormatError for a looping or out-of-range chain (a broken device, not a crash).
        """
        caps: list[Capability] = []
        if self.regs.get("STATUS.CAP_LIST"):
            seen: set[int] = set()
            ptr = self.config.r8(0x34) & 0xFC
            while ptr:
                if ptr < 0x40 or ptr in seen or len(seen) > 48:
                    raise FormatError(f"capability chain is broken at {ptr:#x}", device=self.bdf, offset=ptr)
                seen.add(ptr)
                caps.append(Capability(self.config.r8(ptr), ptr))
                ptr = self.config.r8(ptr + 1) & 0xFC
        if self.config.size >= 0x1000:
            seen = set()
            ptr = 0x100
            while ptr:
                header = self.config.r32(ptr)
                if header in (0, 0xFFFFFFFF):
                    break
                if ptr in seen or ptr < 0x100 or len(seen) > 0x3C0:
                    raise FormatError(f"extended capability chain is broken at {ptr:#x}", device=self.bdf, offset=ptr)
                seen.add(ptr)
                caps.append(Capability(header & 0xFFFF, ptr, extended=True))
                ptr = (header >> 20) & 0xFFC
        return caps

    def find_capability(self, cap_id: int, *, extended: bool = False) -> Capability | None:
        for c in self.capabilities():
            if c.id == cap_id and c.extended == extended:
                return c
        return None

    def enable_memory(self) -> None:
        """Set COMMAND.MEM (memory decode). Raises AccessDenied for a read-only config region."""
        self.regs.set("COMMAND", MEM=1)

    def enable_bus_master(self) -> None:
        """Set COMMAND.BME (the device may DMA). Raises like :meth:`enable_memory`."""
        self.regs.set("COMMAND", BME=1)

    def close(self) -> None:
        self.config.close()

    def __enter__(self) -> "PciFunction":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.bdf} {self.vendor_id:04x}:{self.device_id:04x} class {self.class_code:06x})"

    __repr__ = __str__


class SysfsPci(PciFunction):
    """A PCI function of this machine, through ``/sys/bus/pci/devices/BDF``.

    Config space opens read-only; ``writable=True`` is refused for an owned device unless
    *force*; *dry_run* logs config and sysfs writes without doing them.
    Raises HardwareNotFound, DeviceOwned, AccessDenied, UsageError.
    """

    def __init__(self, bdf: str, *, writable: bool = False, force: bool = False, dry_run: bool = False) -> None:
        bdf = normalize_bdf(bdf)
        self.sysdir = os.path.join(safety.SYSFS_PCI, bdf)
        if not os.path.isdir(self.sysdir):
            raise HardwareNotFound(f"no PCI device {bdf}; list them with `fsproto pci ls`", device=bdf)
        if writable and not dry_run:
            safety.check(bdf, "write config space of", force=force)
        self.force = force
        self.dry_run = dry_run
        backend: Backend = SysfsConfigBackend(os.path.join(self.sysdir, "config"), writable=writable and not dry_run)
        if writable and dry_run:
            backend = DryRunFacade(backend)  # never opened for write: nothing can reach the device
        config = Region(backend, writable=writable, dry_run=dry_run, name=f"{bdf}/config", owns_backend=True)
        super().__init__(bdf, config)
        self.sysfs = safety.SysfsWriter(dry_run=dry_run)

    def _attr(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.sysdir, name)) as f:
                return f.read().strip()
        except OSError:
            return None

    @property
    def driver(self) -> str | None:
        return safety.driver_of(self.sysdir)

    @property
    def iommu_group(self) -> int | None:
        link = os.path.join(self.sysdir, "iommu_group")
        return int(os.path.basename(os.readlink(link))) if os.path.islink(link) else None

    def ownership(self) -> safety.Ownership:
        return safety.ownership(self.bdf)

    def bars(self) -> list[Bar]:
        """Assigned BARs from sysfs ``resource`` (64-bit BARs take two slots). Raises HardwareError."""
        text = self._attr("resource")
        if text is None:
            raise HardwareError("cannot read sysfs resource", device=self.bdf)
        bars = []
        for i, line in enumerate(text.splitlines()[:6]):
            start, end, flags = (int(x, 16) for x in line.split())
            if flags and end > start and not flags & (IORESOURCE_DISABLED | IORESOURCE_UNSET):
                bars.append(Bar(i, start, end - start + 1, flags))
        return bars

    def bar(self, index: int) -> Bar:
        """Raises HardwareNotFound naming the BARs this device has."""
        for b in self.bars():
            if b.index == index:
                return b
        have = ", ".join(f"BAR{b.index}" for b in self.bars()) or "none"
        raise HardwareNotFound(f"no BAR{index} (this device has: {have})", device=self.bdf)

    def map_bar(
        self, index: int, *, writable: bool = False, force: bool = False, dry_run: bool = False,
        offset: int = 0, size: int | None = None, wc: bool = False,
    ) -> Region:
        """Map BAR *index* through ``resourceN`` (``resourceN_wc`` with *wc*: bulk windows only).

        Refused while a kernel driver or mount owns the device, unless *force*.
        Raises DeviceOwned, HardwareNotFound (no such BAR, an I/O BAR, no resource file),
        AccessDenied (lockdown/no root), RegionOutOfRange, HardwareError (EINVAL: claimed region).
        """
        safety.check(self.bdf, f"map BAR{index} of", force=force or self.force)
        bar = self.bar(index)
        if bar.is_io:
            raise HardwareNotFound(f"BAR{index} is an I/O-port BAR; it cannot be memory-mapped", device=self.bdf)
        path = os.path.join(self.sysdir, f"resource{index}{'_wc' if wc else ''}")
        if not os.path.exists(path):
            why = "only prefetchable BARs have _wc files" if wc else "this kernel exposes no resource files for it"
            raise HardwareNotFound(f"no {os.path.basename(path)} ({why}); use uio or vfio", device=self.bdf)
        backend = MappedBackend(path, offset=offset, size=size, writable=writable)
        return Region(backend, offset=backend.skew, size=backend.size - backend.skew, writable=writable,
                      dry_run=dry_run or self.dry_run, name=f"{self.bdf}/BAR{index}", owns_backend=True)

    def rebind(self, driver: str | None, *, force: bool = False) -> list[str]:
        """Move the function to *driver* via driver_override (None: back to the default match).

        Returns the sysfs writes done (or, in dry-run, the ones that would be).
        Raises DeviceOwned (unless forced), HardwareError (the kernel refused a write).
        """
        safety.check(self.bdf, "rebind", force=force or self.force)
        steps_before = len(self.sysfs.log)
        self.sysfs.write(os.path.join(self.sysdir, "driver_override"), driver or "\n")
        if self.driver is not None:
            self.sysfs.write(os.path.join(self.sysdir, "driver", "unbind"), self.bdf)
        self.sysfs.write("/sys/bus/pci/drivers_probe", self.bdf)
        return self.sysfs.log[steps_before:]

    def unbind(self, *, force: bool = False) -> list[str]:
        """Detach the bound driver (nothing when unbound). Raises like :meth:`rebind`."""
        safety.check(self.bdf, "unbind", force=force or self.force)
        if self.driver is None:
            return []
        self.sysfs.write(os.path.join(self.sysdir, "driver", "unbind"), self.bdf)
        return self.sysfs.log[-1:]


def devices() -> list[SysfsPci]:
    """Every PCI function of this machine (read-only handles), sorted by BDF."""
    try:
        names = sorted(os.listdir(safety.SYSFS_PCI))
    except OSError as e:
        raise HardwareNotFound("no /sys/bus/pci/devices (no PCI bus, or sysfs not mounted)", device=safety.SYSFS_PCI) from e
    return [SysfsPci(n) for n in names]


def pci(bdf: str, **options: object) -> SysfsPci:
    """The REPL's ``pci("00:02.0")``: one function by address (see SysfsPci for options)."""
    return SysfsPci(bdf, **options)  # type: ignore[arg-type]
