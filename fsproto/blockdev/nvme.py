"""NvmeBlockDevice: a namespace behind fsproto's own NVMe driver, as a block device; and the
``nvme:``/``ahci:`` device specs that :func:`fsproto.blockdev.open.open_device` accepts.

Specs (so ``fsproto mkfs``, ``ls``, ``mount`` work unchanged on a controller):

* ``nvme:qtest:IMAGE[,PROP=VALUE...]`` -- QEMU's NVMe model over qtest with IMAGE as its disk,
  namespace 1 (no guest, no root: how CI runs); PROPs go to QEMU's ``-device`` (e.g.
  ``logical_block_size=4096``); ``ahci:qtest:IMAGE`` -- the same with QEMU's ICH9 AHCI;
* ``nvme:BDF[/NSID]`` -- a function of this machine on uio_pci_generic (pagemap DMA);
  ``nvme:vfio:BDF[/NSID]`` -- bound to vfio-pci (IOMMU DMA); ``ahci:BDF[/PORT]`` likewise.

Data moves through one DMA bounce buffer of *depth* slots of the controller's maximum transfer
(128 KiB by default; see :mod:`fsproto.blockdev.controller`): a large request becomes up to
*depth* commands in flight at once over the controller's I/O queues. Each slot's data pointers
(PRP list, or one SGL descriptor) are built once. ``trim`` is Dataset Management (deallocate)
and ``write_zeroes`` is Write Zeroes where Identify ONCS lists them.

The stacking (partition, block-size adapter, overlay, trace) is
:func:`fsproto.blockdev.open.open_device`'s: it calls :func:`open_controller_disk` for these specs,
and this module does not import it.

Limits: the device owns its controller (and QEMU under qtest): ``close()`` flushes, shuts the
controller down and, for qtest, kills QEMU.
"""

from __future__ import annotations

import re

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.controller import ControllerBlockDevice
from fsproto.errors import UsageError
from fsproto.hw.nvme import commands as cmd
from fsproto.hw.nvme.attach import Attachment
from fsproto.hw.nvme.controller import IO_QUEUES, PAGE, NvmeController
from fsproto.hw.nvme.datapointers import PreparedPointers

CONTROLLER_PREFIXES = ("nvme:", "ahci:")
_BDF = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_HOST_SPEC = re.compile(rf"(nvme|ahci):(?:(vfio|uio):)?({_BDF})(?:/(\d+))?")


class NvmeBlockDevice(ControllerBlockDevice):
    """Namespace *nsid* of a running :class:`NvmeController` (block size = the namespace's LBA size).

    *attachment* (optional) is closed after the controller, e.g. to kill QEMU.
    Raises HardwareNotFound for an inactive namespace.
    """

    def __init__(self, controller: NvmeController, nsid: int = 1, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None, depth: int | None = None) -> None:
        ns = controller.namespace(nsid)
        room = sum(q.entries - 1 for q in controller.queues)
        super().__init__(name or f"{controller.name}/{nsid}", ns.block_size, ns.blocks, read_only,
                         max_transfer=controller.max_transfer, alloc=controller.alloc, attachment=attachment,
                         depth=min(depth or 16, room))
        self.controller = controller
        self.nsid = nsid
        self._prepared: list[PreparedPointers] = []
        try:
            for k in range(self._depth):
                self._prepared.append(PreparedPointers(self._bounce, k * self._slot, self._slot, PAGE,
                                                       controller.alloc, controller.sgl))
        except BaseException:
            self._free_buffers()
            raise

    def _rw_cmds(self, write: bool, chunks: list[tuple[int, int, int]]) -> None:
        op = cmd.NVM_WRITE if write else cmd.NVM_READ
        bs, ctrl = self._block_size, self.controller
        requests = []
        for lba, n, k in chunks:
            requests.append(ctrl.rw_request(op, self.nsid, lba, n, pointers=self._prepared[k].pointers(n * bs)))
        ctrl.run(requests)

    def _flush_cmd(self) -> None:
        self.controller.flush(self.nsid)

    def _trim_cmd(self, lba: int, count: int) -> None:
        if self.controller.identify.oncs & cmd.ONCS_DSM:
            self.controller.deallocate(self.nsid, [(lba, count)])

    def _zero_cmd(self, lba: int, count: int) -> bool:
        if not self.controller.identify.oncs & cmd.ONCS_WRITE_ZEROES:
            return False
        self.controller.write_zeroes(self.nsid, lba, count)
        return True

    def _free_buffers(self) -> None:
        for p in self._prepared:
            p.free()
        self._prepared = []

    def _shutdown(self) -> None:
        self._free_buffers()
        self.controller.close()


def open_controller_disk(spec: str, writable: bool, force: bool = False) -> BlockDevice:
    """The raw block device for a controller spec (see the module docstring); open_device stacks it.

    Raises UsageError (bad spec), DeviceNotFound, and the HardwareError family.
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
            irqs = att.interrupts(IO_QUEUES) if att.interrupts is not None and att.interrupts_by_default else None
            ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name, interrupts=irqs)
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
