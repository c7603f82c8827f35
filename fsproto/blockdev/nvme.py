"""NvmeBlockDevice: a namespace behind fsproto's own NVMe driver, as a block device; and the
``nvme:``/``ahci:`` device specs that :func:`fsproto.blockdev.open.open_device` accepts.

Specs (so ``fsproto mkfs``, ``ls``, ``mount`` work unchanged on a controller):

* ``nvme:qtest:IMAGE[,PROP=VALUE...]`` -- QEMU's NVMe model over qtest with IMAGE as its disk,
  namespace 1 (no guest, no root: how CI runs); PROPs go to QEMU's ``-device`` (e.g.
  ``logical_block_size=4096``); ``ahci:qtest:IMAGE`` -- the same with QEMU's ICH9 AHCI;
* ``nvme:BDF[/NSID]`` -- a function of this machine on uio_pci_generic (pagemap DMA);
  ``nvme:vfio:BDF[/NSID]`` -- bound to vfio-pci (IOMMU DMA); ``ahci:BDF[/PORT]`` likewise.

Data moves through one DMA bounce buffer of the controller's maximum transfer (128 KiB by
default), so a request of any size is split into commands and never allocates per call.

Limits: one command at a time; the device owns its controller (and QEMU under qtest):
``close()`` flushes, shuts the controller down and, for qtest, kills QEMU.
"""

from __future__ import annotations

import os
import re
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import ControllerError, DeviceError, HardwareError, MediaError, OutOfRange, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.attach import Attachment
from fsproto.hw.nvme.controller import NvmeController

CONTROLLER_PREFIXES = ("nvme:", "ahci:")
_BDF = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_HOST_SPEC = re.compile(rf"(nvme|ahci):(?:(vfio|uio):)?({_BDF})(?:/(\d+))?")


class NvmeBlockDevice(BlockDevice):
    """Namespace *nsid* of a running :class:`NvmeController` (block size = the namespace's LBA size).

    *attachment* (optional) is closed after the controller, e.g. to kill QEMU.
    Raises HardwareNotFound for an inactive namespace.
    """

    @property
    def survives_fork(self) -> bool:
        return False  # DMA buffers are MADV_DONTFORK; the controller session is the parent's

    def __init__(self, controller: NvmeController, nsid: int = 1, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None) -> None:
        ns = controller.namespace(nsid)
        super().__init__(name or f"{controller.name}/{nsid}", ns.block_size, ns.blocks, read_only)
        self.controller = controller
        self.nsid = nsid
        self.attachment = attachment
        self._chunk = controller.max_transfer // ns.block_size
        self._bounce = controller.alloc(self._chunk * ns.block_size)
        self._pid = os.getpid()

    def _read_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None:
        self.controller.read(self.nsid, lba, n, buf, offset)

    def _write_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None:
        self.controller.write(self.nsid, lba, n, buf, offset)

    def _read(self, lba: int, count: int) -> bytes:
        out = bytearray()
        bs = self._block_size
        for start in range(lba, lba + count, self._chunk):
            n = min(self._chunk, lba + count - start)
            self._command(self._read_cmd, start, n)
            out += self._bounce.read(0, n * bs)
        return bytes(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        bs = self._block_size
        count = len(view) // bs
        for start in range(lba, lba + count, self._chunk):
            n = min(self._chunk, lba + count - start)
            self._bounce.write(0, view[(start - lba) * bs : (start - lba + n) * bs])
            self._command(self._write_cmd, start, n)

    def _command(self, op: Callable[[int, int, DmaBuffer, int], None], lba: int, n: int) -> None:
        if os.getpid() != self._pid:
            # DMA memory is MADV_DONTFORK and QEMU/queues belong to the opener: a forked child
            # (e.g. a daemonizing mount) must not touch them. `fsproto mount -f` keeps one process.
            raise DeviceError("a controller device cannot be used after fork(); open it in this process "
                              "(fsproto mount -f)", device=self._name, lba=lba)
        try:
            op(lba, n, self._bounce, 0)
        except OutOfRange:
            raise
        except ControllerError as e:
            # The block layer's callers expect MediaError for an I/O failure; keep the status.
            raise MediaError(f"{e.message}", device=self._name, lba=lba) from e
        except HardwareError as e:
            raise MediaError(f"controller access failed: {e}", device=self._name, lba=lba) from e

    def fileno(self) -> int | None:
        """The image file under a qtest controller (for fsproto.blockdev.lock), else None."""
        return self.attachment.image_fd if self.attachment is not None else None

    def _flush(self) -> None:
        try:
            self.controller.flush(self.nsid)
        except HardwareError as e:
            raise MediaError(f"flush failed: {e}", device=self._name) from e

    def _close(self) -> None:
        try:
            self._bounce.free()
            self.controller.close()
        except HardwareError as e:
            raise MediaError(f"controller shutdown failed: {e}", device=self._name) from e
        finally:
            if self.attachment is not None:
                self.attachment.close()


def _controller_device(spec: str, writable: bool, force: bool = False) -> BlockDevice:
    """The raw block device for a controller spec (see the module docstring)."""
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


def open_controller(spec: str, *, writable: bool = False, force: bool = False, block_size: int | None = 512,
                    partition: int | None = None, overlay: object = None, trace: object = None) -> BlockDevice:
    """``open_device`` for ``nvme:``/``ahci:`` specs, with the same stacking (partition ->
    block-size adapter -> overlay -> trace). Raises like open_device, plus HardwareError family."""
    from fsproto.blockdev.overlay import Overlay
    from fsproto.blockdev.partition import open_partition
    from fsproto.blockdev.trace import TracingDevice
    from fsproto.blockdev.wrap import BlockSizeAdapter, SubDevice

    disk = _controller_device(spec, writable and overlay is None, force)
    dev = disk
    try:
        if partition is not None:
            dev = open_partition(disk, partition)
        if block_size is not None and dev.block_size != block_size:
            dev = BlockSizeAdapter(dev, block_size, name=dev.name)
        if overlay is not None:
            dev = Overlay(dev, overlay)  # type: ignore[arg-type]
            if not writable:
                dev = SubDevice(dev, 0, dev.num_blocks, name=dev.name, read_only=True)
        if trace is not None:
            dev = TracingDevice(dev, trace)  # type: ignore[arg-type]
    except BaseException:
        dev.close()
        if dev is not disk:
            disk.close()
        raise
    return dev
