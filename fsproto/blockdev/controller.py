"""ControllerBlockDevice: what NVMe namespaces and AHCI disks behind fsproto's own drivers share.

Data moves through one DMA bounce buffer of the controller's maximum transfer, so a request of
any size is split into commands and never allocates per call. The device owns its controller
(and QEMU under qtest): ``close()`` flushes, shuts the controller down, then closes the
attachment. Subclasses issue the commands.
"""

from __future__ import annotations

import abc
import os
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import ControllerError, DeviceError, HardwareError, MediaError, OutOfRange
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.attach import Attachment

Command = Callable[[int, int, DmaBuffer, int], None]  # (lba, blocks, buffer, offset in buffer)


class ControllerBlockDevice(BlockDevice):
    """A disk behind a user-space storage controller driver."""

    _controller_kind = "controller"  # how errors name the controller ("HBA" for AHCI)

    def __init__(self, name: str, block_size: int, num_blocks: int, read_only: bool, *,
                 max_transfer: int, alloc: Callable[[int], DmaBuffer], attachment: Attachment | None) -> None:
        super().__init__(name, block_size, num_blocks, read_only)
        self.attachment = attachment
        self._chunk = max_transfer // block_size
        self._bounce = alloc(self._chunk * block_size)
        self._pid = os.getpid()

    @property
    def survives_fork(self) -> bool:
        return False  # DMA buffers are MADV_DONTFORK; the controller session is the parent's

    # -- for subclasses --------------------------------------------------------------------
    @abc.abstractmethod
    def _read_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None: ...

    @abc.abstractmethod
    def _write_cmd(self, lba: int, n: int, buf: DmaBuffer, offset: int) -> None: ...

    @abc.abstractmethod
    def _flush_cmd(self) -> None: ...

    @abc.abstractmethod
    def _shutdown(self) -> None: ...

    # -- the block interface -----------------------------------------------------------------
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

    def _command(self, op: Command, lba: int, n: int) -> None:
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
            raise MediaError(f"{self._controller_kind} access failed: {e}", device=self._name, lba=lba) from e

    def fileno(self) -> int | None:
        """The image file under a qtest controller (for fsproto.blockdev.lock), else None."""
        return self.attachment.image_fd if self.attachment is not None else None

    def _flush(self) -> None:
        try:
            self._flush_cmd()
        except HardwareError as e:
            raise MediaError(f"flush failed: {e}", device=self._name) from e

    def _close(self) -> None:
        try:
            self._bounce.free()
            self._shutdown()
        except HardwareError as e:
            raise MediaError(f"{self._controller_kind} shutdown failed: {e}", device=self._name) from e
        finally:
            if self.attachment is not None:
                self.attachment.close()
