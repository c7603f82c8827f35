"""``fsproto lab``: a disposable QEMU guest for driver work, where crashing the guest costs nothing.

:func:`run` boots a guest that shares the host's root read-only over virtio-9p (so it runs this
same Python and this same fsproto), with NVMe/AHCI disks backed by image files, runs one shell
command and powers off. :func:`prepare` fetches and caches the guest kernel once
(:mod:`fsproto.lab.kernel`). Facts: ``shared/specs/hardware.md`` section 5.
"""

from fsproto.lab.guest import Disk, LabResult, kvm_usable, run
from fsproto.lab.kernel import GuestKernel, default_cache, load, prepare

__all__ = ["Disk", "GuestKernel", "LabResult", "default_cache", "kvm_usable", "load", "prepare", "run"]
