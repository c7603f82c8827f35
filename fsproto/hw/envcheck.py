"""One-call environment check for user-space drivers (lone's ``requirements``, hardware.md 5).

Says which access paths this machine offers and what to change: privileges for physical
addresses, kernel lockdown, ``/dev/mem``, sysfs BAR files, IOMMU groups, uio/vfio drivers,
hugetlb pages, the memlock limit, and QEMU for the qtest backend. Read-only: nothing is loaded,
bound or written.
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
from dataclasses import dataclass

from fsproto.errors import FsprotoError
from fsproto.hw.backends.mapped import lockdown_state


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def __str__(self) -> str:
        mark = "ok " if self.ok else "-- "
        return f"{mark}{self.name}: {self.detail}" + (f" ({self.hint})" if self.hint and not self.ok else "")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _pfn_visible() -> Check:
    from fsproto.hw.memory import malloc, pagemap

    try:
        buf = malloc(4096, huge=False)
        try:
            visible = pagemap(buf.addr).pfn != 0
        finally:
            buf.free()
    except FsprotoError as e:
        return Check("physical addresses", False, str(e))
    return Check("physical addresses", visible, "pagemap shows PFNs" if visible else "PFNs read as 0",
                 "needs CAP_SYS_ADMIN (run as root)")


def environment() -> list[Check]:
    """Every check, in the order a bring-up would need them."""
    mode = lockdown_state()
    resources = glob.glob("/sys/bus/pci/devices/*/resource[0-5]")
    groups = glob.glob("/sys/kernel/iommu_groups/*")
    drivers = set(os.listdir("/sys/bus/pci/drivers")) if os.path.isdir("/sys/bus/pci/drivers") else set()
    huge_total = int(_read("/proc/sys/vm/nr_hugepages") or 0)
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    memlock = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
    compact = _read("/proc/sys/vm/compact_unevictable_allowed")
    return [
        _pfn_visible(),
        Check("kernel lockdown", mode is None, mode or "none", "lockdown forbids BAR mmap and /dev/mem"),
        Check("/dev/mem", os.path.exists("/dev/mem"), "present" if os.path.exists("/dev/mem") else "absent",
              "CONFIG_DEVMEM is off; use sysfs resourceN, uio or vfio"),
        Check("sysfs BAR files", bool(resources), f"{len(resources)} resourceN files",
              "this kernel exposes no resourceN: map BARs through vfio"),
        Check("IOMMU", bool(groups), f"{len(groups)} groups", "boot with intel_iommu=on / amd_iommu=on for vfio"),
        Check("uio_pci_generic", "uio_pci_generic" in drivers, "loaded" if "uio_pci_generic" in drivers else "not loaded",
              "modprobe uio_pci_generic"),
        Check("vfio-pci", "vfio-pci" in drivers, "loaded" if "vfio-pci" in drivers else "not loaded", "modprobe vfio-pci"),
        Check("hugetlb pages", huge_total > 0, f"{huge_total} reserved", "sysctl vm.nr_hugepages=N for contiguous DMA"),
        Check("memlock limit", soft == resource.RLIM_INFINITY or soft >= 64 << 20, memlock,
              "mpin of large buffers needs `ulimit -l` raised or CAP_IPC_LOCK"),
        Check("compaction of locked pages", compact == "0", f"vm.compact_unevictable_allowed={compact}",
              "mlocked pages may still move; set it to 0 or use hugetlb"),
        Check("qtest backend", shutil.which("qemu-system-x86_64") is not None,
              "qemu-system-x86_64 found" if shutil.which("qemu-system-x86_64") else "no QEMU",
              "apt-get install qemu-system-x86"),
    ]
