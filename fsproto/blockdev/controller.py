"""ControllerBlockDevice: what NVMe namespaces and AHCI disks behind fsproto's own drivers share.

Data moves through one DMA bounce buffer of *depth* slots of the controller's maximum transfer,
so a request of any size is split into commands, up to *depth* of them handed to the driver at
once (NVMe runs them in parallel over its queues), and never allocates per call. The device
owns its controller (and QEMU under qtest): ``close()`` flushes, shuts the controller down,
then closes the attachment. Subclasses issue the commands.
"""

from __future__ import annotations

import abc
import os
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.errors import ControllerError, DeviceError, HardwareError, MediaError, OutOfRange
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.attach import Attachment

Chunk = tuple[int, int, int]  # (lba, blocks, slot): slot k is bytes [k * max_transfer, (k + 1) * max_transfer)


class ControllerBlockDevice(BlockDevice):
    """A disk behind a user-space storage controller driver."""

    _controller_kind = "controller"  # how errors name the controller ("HBA" for AHCI)

    def __init__(self, name: str, block_size: int, num_blocks: int, read_only: bool, *,
                 max_transfer: int, alloc: Callable[[int], DmaBuffer], attachment: Attachment | None,
                 depth: int = 1) -> None:
        super().__init__(name, block_size, num_blocks, read_only)
        self.attachment = attachment
        self._chunk = max_transfer // block_size
        self._slot = self._chunk * block_size
        self._depth = max(1, depth)
        self._bounce = alloc(self._slot * self._depth)
        self._pid = os.getpid()

    @property
    def survives_fork(self) -> bool:
        return False  # DMA buffers are MADV_DONTFORK; the controller session is the parent's

    # -- for subclasses --------------------------------------------------------------------
    @abc.abstractmethod
    def _rw_cmds(self, write: bool, chunks: list[Chunk]) -> None:
        """Transfer every chunk between the device and its bounce slot (in any order, in parallel
        where the controller can); return when all are done, raise the first failure."""

    @abc.abstractmethod
    def _flush_cmd(self) -> None: ...

    @abc.abstractmethod
    def _shutdown(self) -> None: ...

    def _trim_cmd(self, lba: int, count: int) -> None:  # noqa: B027 - optional: trim is advisory
        pass

    def _zero_cmd(self, lba: int, count: int) -> bool:
        """Zero blocks without data transfer; False when the controller cannot (then zeroes are written)."""
        return False

    # -- the block interface -----------------------------------------------------------------
    def _waves(self, lba: int, count: int):  # type: ignore[no-untyped-def]
        """Chunks of at most one command, grouped *depth* at a time."""
        starts = range(lba, lba + count, self._chunk)
        for w in range(0, len(starts), self._depth):
            yield [(s, min(self._chunk, lba + count - s), k) for k, s in enumerate(starts[w : w + self._depth])]

    def _read(self, lba: int, count: int) -> bytes:
        out: list[bytes] = []
        bs = self._block_size
        for wave in self._waves(lba, count):
            self._command(wave[0][0], self._rw_cmds, False, wave)
            # One copy out of the bounce slots (under a VM every memcpy of megabytes shows).
            out.append(self._bounce.region.read_many([(k * self._slot, n * bs) for _s, n, k in wave]))
        return out[0] if len(out) == 1 else b"".join(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        bs = self._block_size
        for wave in self._waves(lba, len(view) // bs):
            for s, n, k in wave:
                self._bounce.write(k * self._slot, view[(s - lba) * bs : (s - lba + n) * bs])
            self._command(wave[0][0], self._rw_cmds, True, wave)

    def _trim(self, lba: int, count: int) -> None:
        self._command(lba, self._trim_cmd, lba, count)

    def _write_zeroes(self, lba: int, count: int) -> None:
        if not self._command(lba, self._zero_cmd, lba, count):
            super()._write_zeroes(lba, count)

    def _command(self, lba: int, op: Callable[..., object], *args: object) -> object:
        if os.getpid() != self._pid:
            # DMA memory is MADV_DONTFORK and QEMU/queues belong to the opener: a forked child
            # (e.g. a daemonizing mount) must not touch them. `fsproto mount -f` keeps one process.
            raise DeviceError("a controller device cannot be used after fork(); open it in this process "
                              "(fsproto mount -f)", device=self._name, lba=lba)
        try:
            return op(*args)
        except OutOfRange:
            raise
        except ControllerError as e:
            # The block layer's callers expect MediaError for an I/O failure; keep the status.
            raise MediaError(f"{e.message}", device=self._name, lba=e.lba if e.lba is not None else lba) from e
        except HardwareError as e:
            raise MediaError(f"{self._controller_kind} access failed: {e}", device=self._name, lba=lba) from e

    def fileno(self) -> int | None:
        """The image file under a qtest controller (for fsproto.blockdev.lock), else None."""
        return self.attachment.image_fd if self.attachment is not None else None

    def _flush(self) -> None:
        try:
            self._command(0, self._flush_cmd)
        except DeviceError:
            raise
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
