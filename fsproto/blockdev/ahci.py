"""AhciBlockDevice: a SATA disk behind fsproto's own AHCI driver, as a block device.

Opened from the CLI as ``ahci:qtest:IMAGE`` or ``ahci:BDF[/PORT]`` (see
:mod:`fsproto.blockdev.nvme` for the spec syntax). Data moves through one DMA bounce buffer of
the HBA's maximum transfer (128 KiB; see :mod:`fsproto.blockdev.controller`).

Limits: 512-byte sectors, one command at a time; the device owns its HBA (and QEMU under
qtest): ``close()`` flushes, stops the port and, for qtest, kills QEMU.
"""

from __future__ import annotations

from fsproto.blockdev.controller import ControllerBlockDevice
from fsproto.hw.ahci import SECTOR, AhciController
from fsproto.hw.nvme.attach import Attachment


class AhciBlockDevice(ControllerBlockDevice):
    """The disk on port *port* of *hba*. Raises HardwareNotFound (no disk there), ControllerError."""

    _controller_kind = "HBA"

    def __init__(self, hba: AhciController, port: int, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None) -> None:
        self.port = hba.port(port)
        super().__init__(name or f"{hba.name}/{port}", SECTOR, self.port.identify.sectors, read_only,
                         max_transfer=hba.max_transfer, alloc=hba.alloc, attachment=attachment)
        self.hba = hba

    def _rw_cmds(self, write: bool, chunks: list[tuple[int, int, int]]) -> None:
        op = self.port.write if write else self.port.read
        for lba, n, k in chunks:
            op(lba, n, self._bounce, k * self._slot)

    def _flush_cmd(self) -> None:
        self.port.flush()

    def _shutdown(self) -> None:
        self.hba.close()
