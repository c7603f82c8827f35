"""Interrupts a user-space driver can wait on: MSI-X vectors as eventfds (VFIO), or as a message
written into guest RAM (qtest), and the ``wait_irq`` REPL word.

References: PCI Local Bus 3.0 6.8.2 (MSI-X capability: Message Control bit 15 enable, bit 14
function mask, table size 10:0; the table BIR/offset; 16-byte entries = address low, address
high, data, vector control bit 0 = masked); Linux ``include/uapi/linux/vfio.h``
(``VFIO_DEVICE_SET_IRQS`` with ``VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER``:
the kernel programs the table and signals one eventfd per vector, see
:meth:`fsproto.hw.vfio.VfioDevice.enable_msix`); QEMU's own qtest library (``libqos``) aims
MSI-X messages at guest RAM the same way to see them without a CPU.

An :class:`EventfdInterrupt` is waited on with ``select`` (or trio's ``wait_readable`` on
:meth:`~EventfdInterrupt.fileno`); it never loses an interrupt that fired between a check of
the completion queue and the wait, because the eventfd counts. :class:`GuestRamMsi` has no file
descriptor: waiting on it polls the message word over qtest (it shows that the device really
sent the message; it is not faster than polling the queue).

Limits: MSI-X only (no MSI, no INTx: uio_pci_generic's INTx is not wired up); one waiter per
vector; no interrupt coalescing (NVMe Set Features 08h is left at its default).
"""

from __future__ import annotations

import os
import select
import time
from typing import Sequence

from fsproto.errors import HardwareNotFound, UsageError

PCI_CAP_MSIX = 0x11
MSIX_ENABLE, MSIX_FUNCTION_MASK = 1 << 15, 1 << 14
MSIX_ENTRY = 16


class EventfdInterrupt:
    """One MSI-X vector delivered to an eventfd; ``count`` is how many times it fired."""

    def __init__(self, vector: int, name: str = "") -> None:
        self.vector, self.name = vector, name or f"vector {vector}"
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.count = 0
        self.waits = 0  # waits that blocked (the ring was empty)

    def fileno(self) -> int:
        return self.fd

    def consume(self) -> int:
        """Read the eventfd counter (interrupts since the last read; 0 when none)."""
        try:
            n = os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0
        self.count += n
        return n

    def wait(self, timeout: float) -> bool:
        """Block until the vector fires or *timeout* seconds pass; True when it fired."""
        if self.consume():
            return True
        self.waits += 1
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(ready) and self.consume() > 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __str__(self) -> str:
        return f"EventfdInterrupt({self.name}, fired {self.count} time(s))"


class GuestRamMsi:
    """An MSI-X vector whose message address is a word of guest RAM (qtest): the device's
    interrupt is its memory write of *data* there; waiting polls the word and clears it."""

    def __init__(self, machine, vector: int, addr: int, data: int) -> None:  # type: ignore[no-untyped-def]
        self.machine, self.vector, self.addr, self.data = machine, vector, addr, data
        self.count = 0
        self.waits = 0

    def consume(self) -> int:
        if self.machine.load(self.addr, 4) != self.data:
            return 0
        self.machine.store(self.addr, 4, 0)
        self.count += 1
        return 1

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        self.waits += 1
        while True:
            if self.consume():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0002)

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return f"GuestRamMsi(vector {self.vector} -> guest {self.addr:#x}, fired {self.count} time(s))"


def msix_table(pci) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    """(capability offset, table size, table BIR, table offset) of *pci*'s MSI-X capability.

    Raises HardwareNotFound (no MSI-X)."""
    cap = pci.find_capability(PCI_CAP_MSIX)
    if cap is None:
        raise HardwareNotFound("the function has no MSI-X capability", device=pci.bdf)
    control = pci.config.r16(cap.offset + 2)
    table = pci.config.r32(cap.offset + 4)
    return cap.offset, (control & 0x7FF) + 1, table & 7, table & ~7


def qtest_msix(machine, pci, bar, count: int) -> list[GuestRamMsi]:  # type: ignore[no-untyped-def]
    """Program vectors 0..count-1 of a qtest function's MSI-X table to write guest RAM words and
    enable MSI-X; returns one waiter per vector. *bar* must be the BAR that holds the table.

    Raises HardwareNotFound (no MSI-X), UsageError (more vectors than the table has).
    """
    cap, size, _bir, offset = msix_table(pci)
    if count > size:
        raise UsageError(f"{count} vectors asked for; the MSI-X table has {size}", device=pci.bdf)
    words = machine.malloc(4 * count, align=4)
    out = []
    for v in range(count):
        addr, data = words.device_addr(4 * v), 0x4D530000 | v  # "MS" + vector: never a stale 0
        entry = offset + v * MSIX_ENTRY
        bar.w32(entry, addr & 0xFFFFFFFF)
        bar.w32(entry + 4, addr >> 32)
        bar.w32(entry + 8, data)
        bar.w32(entry + 12, 0)  # unmasked
        out.append(GuestRamMsi(machine, v, addr, data))
    control = pci.config.r16(cap + 2)
    pci.config.w16(cap + 2, (control | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK)
    return out


def wait_irq(source, timeout: float = 1.0) -> int:  # type: ignore[no-untyped-def]
    """REPL word: wait up to *timeout* seconds for an interrupt of *source* (one waiter, or a
    list of them); return how many waiters fired (0 on timeout). Raises UsageError."""
    waiters: Sequence = source if isinstance(source, (list, tuple)) else [source]
    if not waiters or not all(hasattr(w, "wait") for w in waiters):
        raise UsageError("wait_irq takes an interrupt waiter (or a list): e.g. dev.enable_msix(2)")
    if all(hasattr(w, "fileno") for w in waiters) and len(waiters) > 1:
        ready, _, _ = select.select([w.fileno() for w in waiters], [], [], max(0.0, timeout))
        return sum(1 for w in waiters if w.fileno() in ready and w.consume())
    if len(waiters) == 1:
        return int(waiters[0].wait(timeout))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fired = sum(1 for w in waiters if w.consume())
        if fired:
            return fired
        time.sleep(0.0005)
    return 0


__all__ = ["EventfdInterrupt", "GuestRamMsi", "msix_table", "qtest_msix", "wait_irq"]
