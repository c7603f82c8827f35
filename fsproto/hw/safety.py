"""Refuse to touch hardware the running system depends on, unless forced; dry-run sysfs writes.

A PCI function is *owned* when a kernel driver other than a user-space stub (uio_pci_generic,
vfio-pci, pci-stub) is bound to it, or when a block device below it backs a mounted filesystem,
swap, or a holder (dm/md). Mapping its BARs, writing its config space, and rebinding it are
refused with :class:`~fsproto.errors.DeviceOwned` unless ``force=True`` (SPDK setup.sh's
"Active mountpoints ... not binding", hardware.md 5). Forced actions are logged.

Limits: ownership is judged from sysfs and /proc/self/mountinfo at the time of the call; a
``/dev/mem`` window cannot be attributed to a device here (it is read-only unless asked).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from fsproto.errors import DeviceOwned, HardwareError, HardwareNotFound

log = logging.getLogger("fsproto.hw")

SYSFS_PCI = "/sys/bus/pci/devices"
USER_SPACE_DRIVERS = frozenset({"uio_pci_generic", "vfio-pci", "pci-stub"})


@dataclass
class Ownership:
    """Why a PCI function is in use (empty = free to take)."""

    bdf: str
    driver: str | None = None
    block_devices: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)  # "/ (vda)"
    holders: list[str] = field(default_factory=list)

    @property
    def kernel_owned(self) -> bool:
        return self.driver is not None and self.driver not in USER_SPACE_DRIVERS

    @property
    def owned(self) -> bool:
        return self.kernel_owned or bool(self.mounts) or bool(self.holders)

    def reason(self) -> str:
        parts = []
        if self.kernel_owned:
            parts.append(f"kernel driver '{self.driver}' is bound")
        if self.mounts:
            parts.append("it backs mounted " + ", ".join(self.mounts))
        if self.holders:
            parts.append("held by " + ", ".join(self.holders))
        return "; ".join(parts) or "free"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def driver_of(sysdir: str) -> str | None:
    """Name of the driver bound to the device at sysfs directory *sysdir*, or None."""
    link = os.path.join(sysdir, "driver")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def block_devices_below(sysdir: str) -> dict[str, str]:
    """Block devices (disks and their partitions) under a device's sysfs tree: name -> "maj:min"."""
    found: dict[str, str] = {}
    for root, dirs, _files in os.walk(sysdir, followlinks=False):
        if os.path.basename(root) == "block":
            for disk in dirs:
                disk_dir = os.path.join(root, disk)
                for name in [disk, *sorted(os.listdir(disk_dir))]:
                    d = disk_dir if name == disk else os.path.join(disk_dir, name)
                    devnum = _read(os.path.join(d, "dev"))
                    if devnum and (name == disk or os.path.exists(os.path.join(d, "partition"))):
                        found[name] = devnum
            dirs.clear()  # nothing below block/ is another device we need
    return found


def _mounted(devnums: dict[str, str]) -> list[str]:
    by_num = {v: k for k, v in devnums.items()}
    out = []
    text = _read("/proc/self/mountinfo") or ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] in by_num:
            out.append(f"{fields[4]} ({by_num[fields[2]]})")
    swaps = _read("/proc/swaps") or ""
    for line in swaps.splitlines()[1:]:
        name = os.path.basename(line.split()[0]) if line.split() else ""
        if name in devnums:
            out.append(f"swap ({name})")
    return out


def ownership(bdf: str) -> Ownership:
    """Who uses PCI function *bdf* (``0000:00:02.0``). Raises HardwareNotFound."""
    sysdir = os.path.join(SYSFS_PCI, bdf)
    if not os.path.isdir(sysdir):
        raise HardwareNotFound(f"no PCI device {bdf}; list them with `fsproto pci ls`", device=bdf)
    real = os.path.realpath(sysdir)
    disks = block_devices_below(real)
    holders = []
    for name in disks:
        hdir = f"/sys/class/block/{name}/holders"
        if os.path.isdir(hdir):
            holders += [f"{h} (on {name})" for h in os.listdir(hdir)]
    return Ownership(bdf, driver_of(real), sorted(disks), _mounted(disks), holders)


def check(bdf: str, action: str, *, force: bool = False) -> Ownership:
    """Raise DeviceOwned if *bdf* is in use, unless *force* (then log a warning).

    *action* says what was refused ("map BAR0 of", "write config space of", "rebind").
    Raises DeviceOwned, HardwareNotFound.
    """
    own = ownership(bdf)
    if own.owned:
        if not force:
            raise DeviceOwned(
                f"refusing to {action} this device: {own.reason()}; unbind it from its driver first "
                "(`fsproto pci` / driver_override to uio_pci_generic or vfio-pci) or pass force=True (--force)",
                device=bdf,
            )
        log.warning("%s: forced to %s this device although %s", bdf, action, own.reason())
    return own


def check_block_device(path: str, action: str, *, force: bool = False) -> list[str]:
    """Refuse to *action* a block device node that is mounted, swap, or held (or has such a
    partition), unless *force*. Returns what uses it. Raises DeviceOwned."""
    st = os.stat(path)
    devnum = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sysdir = os.path.realpath(f"/sys/dev/block/{devnum}")
    name = os.path.basename(sysdir)
    nums = {name: devnum}
    if os.path.isdir(sysdir):
        for child in os.listdir(sysdir):
            part = os.path.join(sysdir, child)
            if os.path.exists(os.path.join(part, "partition")):
                nums[child] = _read(os.path.join(part, "dev")) or ""
    users = _mounted(nums)
    for n in nums:
        hdir = f"/sys/class/block/{n}/holders"
        if os.path.isdir(hdir):
            users += [f"{h} (holds {n})" for h in os.listdir(hdir)]
    if users:
        if not force:
            raise DeviceOwned(
                f"refusing to {action} {path}: it backs {', '.join(users)}; unmount it first or pass force=True (--force)",
                device=path,
            )
        log.warning("%s: forced to %s although it backs %s", path, action, ", ".join(users))
    return users


def pci_device_of_path(path: str) -> str | None:
    """The PCI function a mappable path belongs to (``.../BDF/resourceN``, ``/dev/uioN``), or None."""
    real = os.path.realpath(path)
    name = os.path.basename(real)
    if name.startswith("resource") or name in ("config", "rom"):
        parent = os.path.basename(os.path.dirname(real))
        if os.path.isdir(os.path.join(SYSFS_PCI, parent)):
            return parent
    if real.startswith("/dev/uio"):
        dev = os.path.realpath(f"/sys/class/uio/{name}/device")
        bdf = os.path.basename(dev)
        if os.path.isdir(os.path.join(SYSFS_PCI, bdf)):
            return bdf
    return None


@dataclass
class SysfsWriter:
    """Writes sysfs attributes, or with *dry_run* only records and logs what it would write."""

    dry_run: bool = False
    log: list[str] = field(default_factory=list)

    def write(self, path: str, text: str) -> None:
        """Raises HardwareError (wrapping the OSError, e.g. EBUSY/ENODEV from a bind)."""
        entry = f"echo {text} > {path}"
        self.log.append(entry)
        if self.dry_run:
            log.info("dry-run: %s", entry)
            return
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as e:
            raise HardwareError(f"writing {text!r} failed: {e.strerror}", device=path) from e
