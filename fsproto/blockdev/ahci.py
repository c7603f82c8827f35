"""AhciBlockDevice: a SATA disk behind fsproto's own AHCI driver, as a block device.

Opened from the CLI as ``ahci:qtest:IMAGE`` or ``ahci:BDF[/PORT]`` (see
:mod:`fsproto.blockdev.nvme` for the spec syntax). Data moves through one DMA bounce buffer of
the HBA's maximum transfer (128 KiB), so a request of any size never allocates per call.

Limits: 512-byte sectors, one command at a time; the device owns its HBA (and QEMU under
qtest): ``close()`` flushes, stops the port and, for qtest, kills QEMU.
"""

from __future__ import annotations

import os
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import DeviceError, HardwareError, MediaError, OutOfRange
from fsproto.hw.ahci import SECTOR, AhciController
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.attach import Attachment


class AhciBlockDevice(BlockDevice):
    """The disk on port *port* of *hba*. Raises HardwareNotFound (no disk there), ControllerError."""

    @property
    def survives_fork(self) -> bool:
        return False  # DMA buffers are MADV_DONTFORK; the controller session is the parent's

    def __init__(self, hba: AhciController, port: int, *, read_only: bool = False,
                 attachment: Attachment | None = None, name: str | None = None) -> None:
        self.port = hba.port(port)
        super().__init__(name or f"{hba.name}/{port}", SECTOR, self.port.identify.sectors, read_only)
        self.hba = hba
        self.attachment = attachment
        self._chunk = hba.max_transfer // SECTOR
        self._bounce = hba.alloc(hba.max_transfer)
        self._pid = os.getpid()

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
        except HardwareError as e:
            raise MediaError(f"{e.message}", device=self._name, lba=lba) from e

    def _read(self, lba: int, count: int) -> bytes:
        out = bytearray()
        for start in range(lba, lba + count, self._chunk):
            n = min(self._chunk, lba + count - start)
            self._command(self.port.read, start, n)
            out += self._bounce.read(0, n * SECTOR)
        return bytes(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        count = len(view) // SECTOR
        for start in range(lba, lba + count, self._chunk):
            n = min(self._chunk, lba + count - start)
            self._bounce.write(0, view[(start - lba) * SECTOR : (start - lba + n) * SECTOR])
            self._command(self.port.write, start, n)

    def fileno(self) -> int | None:
        """The image file under a qtest controller (for fsproto.blockdev.lock), else None."""
        return self.attachment.image_fd if self.attachment is not None else None

    def _flush(self) -> None:
        try:
            self.port.flush()
        except HardwareError as e:
            raise MediaError(f"flush failed: {e}", device=self._name) from e

    def _close(self) -> None:
        try:
            self._bounce.free()
            self.hba.close()
        except HardwareError as e:
            raise MediaError(f"HBA shutdown failed: {e}", device=self._name) from e
        finally:
            if self.attachment is not None:
                self.attachment.close()
