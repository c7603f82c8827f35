"""AhciBlockDevice: a SATA disk behind fsproto's own AHCI driver, as a block device.

Opened from the CLI as ``ahci:qtest:IMAGE`` or ``ahci:BDF[/PORT]`` (see
:mod:`fsproto.blockdev.nvme` for the spec syntax). Data moves through one DMA bounce buffer of
the HBA's maximum transfer (128 KiB; see :mod:`fsproto.blockdev.controller`).

With NCQ (the HBA's CAP.SNCQ and the disk's IDENTIFY word 76) a large request runs as up to 16
READ/WRITE FPDMA QUEUED commands in flight (:mod:`fsproto.hw.ahci_ncq`); otherwise one READ/WRITE
DMA EXT at a time.

Limits: 512-byte sectors; the device owns its HBA (and QEMU under
qtest): ``close()`` flushes, stops the port and, for qtest, kills QEMU.
"""

from __future__ import annotations

from fsproto.blockdev.controller import ControllerBlockDevice
from fsproto.hw.ahci import SECTOR, AhciController
from fsproto.hw.ahci_ncq import NcqQueue
from fsproto.hw.nvme.attach import Attachment


class AhciBlockDevice(ControllerBlockDevice):
    """The disk on port *port* of *hba*. Raises HardwareNotFound (no disk there), ControllerError."""

    _controller_kind = "HBA"

    def __init__(self, hba: AhciController, port: int, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None) -> None:
        self.port = hba.port(port)
        ncq = self.port.identify.ncq_depth and int(hba.regs.CAP) >> 30 & 1
        super().__init__(name or f"{hba.name}/{port}", SECTOR, self.port.identify.sectors, read_only,
                         max_transfer=hba.max_transfer, alloc=hba.alloc, attachment=attachment,
                         depth=min(16, self.port.identify.ncq_depth) if ncq else 1)
        self.hba = hba
        self.ncq = NcqQueue(self.port, self._depth) if ncq else None

    def _rw_cmds(self, write: bool, chunks: list[tuple[int, int, int]]) -> None:
        if self.ncq is not None:
            self.ncq.run([(write, lba, n, self._bounce, k * self._slot) for lba, n, k in chunks])
            return
        op = self.port.write if write else self.port.read
        for lba, n, k in chunks:
            op(lba, n, self._bounce, k * self._slot)

    def _flush_cmd(self) -> None:
        self.port.flush()

    def _shutdown(self) -> None:
        if self.ncq is not None:
            self.ncq.free()
        self.hba.close()
