"""NvmeBlockDevice: a namespace behind fsproto's own NVMe driver, as a block device; and the
``nvme:``/``ahci:`` device specs that :func:`fsproto.blockdev.open.open_device` accepts.

Specs (so ``fsproto mkfs``, ``ls``, ``mount`` work unchanged on a controller):

* ``nvme:qtest:IMAGE[,PROP=VALUE...]`` -- QEMU's NVMe model over qtest with IMAGE as its disk,
  namespace 1 (no guest, no root: how CI runs); PROPs go to QEMU's ``-device`` (e.g.
  ``logical_block_size=4096``); ``ahci:qtest:IMAGE`` -- the same with QEMU's ICH9 AHCI;
* ``nvme:BDF[/NSID]`` -- a function of this machine on uio_pci_generic (pagemap DMA);
  ``nvme:vfio:BDF[/NSID]`` -- bound to vfio-pci (IOMMU DMA); ``ahci:BDF[/PORT]`` likewise.

Data moves through one DMA bounce buffer of the controller's maximum transfer (128 KiB by
default; see :mod:`fsproto.blockdev.controller`).

Limits: one command at a time; the device owns its controller (and QEMU under qtest):
``close()`` flushes, shuts the controller down and, for qtest, kills QEMU.
"""

from __future__ import annotations

import re

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.controller import ControllerBlockDevice
from fsproto.errors import UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.attach import Attachment
from fsproto.hw.nvme.controller import NvmeController

CONTROLLER_PREFIXES = ("nvme:", "ahci:")
_BDF = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_HOST_SPEC = re.compile(rf"(nvme|ahci):(?:(vfio|uio):)?({_BDF})(?:/(\d+))?")


class NvmeBlockDevice(ControllerBlockDevice):
    """Namespace *nsid* of a running :class:`NvmeController` (block size = the namespace's LBA size).

    *attachment* (optional) is closed after the controller, e.g. to kill QEMU.
    Raises HardwareNotFound for an inactive namespace.
    """

    def __init__(self, controller: NvmeController, nsid: int = 1, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None) -> None:
        ns = controller.namespace(nsid)
        super().__init__(name or f"{controller.name}/{nsid}", ns.block_size, ns.blocks, read_only,
                         max_transfer=controller.max_transfer, alloc=controller.alloc, attachment=attachment)
        self.controller = controller
        self.nsid = nsid

    def _read_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None:
        self.controller.read(self.nsid, lba, n, buf, offset)

    def _write_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None:
        self.controller.write(self.nsid, lba, n, buf, offset)

    def _flush_cmd(self) -> None:
        self.controller.flush(self.nsid)

    def _shutdown(self) -> None:
        self.controller.close()


def open_controller_disk(spec: str, writable: bool, force: bool = False) -> BlockDevice:
    """The raw block device for a controller spec (see the module docstring); open_device stacks it.

    Raises UsageError for a malformed spec, the HardwareError family.
    """
    from fsproto.hw.nvme import attach

    kind, _, rest = spec.partition(":")
    if rest.startswith("qtest:"):
        # QEMU takes no ',' in a path, so everything after the first one is -device properties.
        image, _, props = rest[len("qtest:") :].partition(",")
        if not image:
            raise UsageError(f"{spec}: give an image file after {kind}:qtest:")
        att = attach.qtest(image, controller=kind, read_only=not writable, device_props=props)
        unit = 1 if kind == "nvme" else 0
    else:
        m = _HOST_SPEC.fullmatch(spec)
        if not m:
            raise UsageError(f"{spec!r} is not a controller spec: {kind}:qtest:IMAGE, {kind}:BDF[/N] or {kind}:vfio:BDF[/N]")
        bar = 0 if kind == "nvme" else 5
        att = attach.vfio(m.group(3), bar) if m.group(2) == "vfio" else attach.uio(m.group(3), bar, force=force)
        unit = int(m.group(4)) if m.group(4) else (1 if kind == "nvme" else -1)
    try:
        if kind == "nvme":
            ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name)
            try:
                return NvmeBlockDevice(ctrl, unit, read_only=not writable, attachment=att)
            except BaseException:
                ctrl.close()
                raise
        from fsproto.blockdev.ahci import AhciBlockDevice
        from fsproto.hw.ahci import AhciController

        hba = AhciController(att.bar, att.pci, att.alloc, name=att.name)
        try:
            port = unit if unit >= 0 else hba.first_disk_port()
            return AhciBlockDevice(hba, port, read_only=not writable, attachment=att)
        except BaseException:
            hba.close()
            raise
    except BaseException:
        att.close()
        raise

