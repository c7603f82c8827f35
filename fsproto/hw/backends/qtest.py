"""QEMU as a device model: the qtest protocol, guest-memory DMA buffers, PCI over CF8/CFC.

Recipe and traps from hardware.md section 4 (verified there with Debian's QEMU):
``qemu-system-x86_64 -machine q35 -accel tcg -S -nodefaults -display none -m 256M
-qtest unix:SOCK -qtest-log /dev/null ...``. We listen on SOCK first and QEMU connects. With
``-S`` no firmware runs, so BARs are unassigned: :meth:`QtestPci.assign_bars` sizes and places
them and sets memory decode. Traps handled here: the qtest log must not go to a pipe (deadlock;
it goes to /dev/null and stderr to a file), asynchronous ``IRQ raise/lower`` lines can arrive
before a reply, QEMU does not exit when the socket closes (we kill its process group), and every
command is a ~0.1 ms socket round trip, so bulk data moves with ``b64read``/``b64write``.

Each ``readb/readw/readl/readq`` or ``write*`` command is one access of exactly that size in the
guest's physical address space (QEMU's ``memory_region_ops_*`` trace shows it; the device model
may still split or widen it according to its own access rules).

Limits: no interrupts (IRQ lines are recorded, nothing waits on them); config space is the
legacy 256 bytes (no ECAM without firmware); x86 q35 only.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from typing import Sequence

from fsproto.errors import HardwareError, HardwareNotFound, QtestError, RegionOutOfRange, UsageError
from fsproto.hw.backends.base import Backend
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.pci import Bar, PciFunction, normalize_bdf
from fsproto.hw.region import Region
from fsproto.subproc import kill_group

MMIO_BASE = 0xE0000000  # where assign_bars() places BARs (hardware.md 4 used 0xE0000000/0xE1000000)
MMIO_END = 0xFEC00000  # below the IOAPIC
RAM_BASE = 0x100000  # guest allocations start above the legacy first megabyte
_READ = {1: "readb", 2: "readw", 4: "readl", 8: "readq"}
_WRITE = {1: "writeb", 2: "writew", 4: "writel", 8: "writeq"}
_IN = {1: "inb", 2: "inw", 4: "inl"}
_OUT = {1: "outb", 2: "outw", 4: "outl"}


def _reap(proc: subprocess.Popen, workdir: str) -> None:  # type: ignore[type-arg]
    """Kill QEMU's process group and wait for it; remove the work directory. Never raises."""
    kill_group(proc)
    shutil.rmtree(workdir, ignore_errors=True)


class QtestMachine:
    """One QEMU process driven over qtest; ``close()`` (or the context manager) reaps it.

    *devices* are extra QEMU arguments (``["-device", "nvme,serial=x,drive=d0", ...]``);
    *trace* names QEMU trace events written to :attr:`trace_path`. *timeout* bounds start-up and
    every command. Raises HardwareNotFound (no QEMU binary), QtestError (did not start/connect).
    """

    def __init__(
        self,
        devices: Sequence[str] = (),
        *,
        memory_mb: int = 256,
        timeout: float = 15.0,
        trace: Sequence[str] = (),
        qemu: str = "qemu-system-x86_64",
    ) -> None:
        binary = shutil.which(qemu)
        if binary is None:
            raise HardwareNotFound(f"{qemu} not found: apt-get install qemu-system-x86 (tools/setup.sh does)", device=qemu)
        self.workdir = tempfile.mkdtemp(prefix="fsproto-qtest-")
        self.memory = memory_mb << 20
        self.timeout = timeout
        self.trace_path = os.path.join(self.workdir, "trace.log")
        self.irqs: dict[int, bool] = {}
        self._stderr_path = os.path.join(self.workdir, "stderr")
        sock_path = os.path.join(self.workdir, "qtest.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock: socket.socket | None = None
        try:
            listener.bind(sock_path)
            listener.listen(1)
            listener.settimeout(0.2)
            argv = [binary, "-machine", "q35", "-accel", "tcg", "-S", "-nodefaults", "-no-user-config",
                    "-display", "none", "-m", f"{memory_mb}M", "-qtest", f"unix:{sock_path}",
                    "-qtest-log", "/dev/null", *devices]
            for event in trace:
                argv += ["-trace", event]
            if trace:
                argv += ["-D", self.trace_path]
            with open(self._stderr_path, "wb") as err:
                # Own session: close() kills the whole group, nothing is left behind.
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=err, start_new_session=True, cwd=self.workdir)
            self._finalizer = weakref.finalize(self, _reap, self._proc, self.workdir)
            self._sock = self._accept(listener)
            self._sock.settimeout(timeout)
            self._buf = b""
            # QEMU connects before it creates the devices; a bad -device only shows up when it
            # exits, so wait for one answer before calling the machine up.
            self.command("endianness")
        except BaseException:
            listener.close()
            self.close()
            raise
        listener.close()
        self._mmio_next = MMIO_BASE
        self._functions: dict[str, QtestPci] = {}
        self._ram_free: list[tuple[int, int]] = [(RAM_BASE, self.memory - RAM_BASE)]

    def _accept(self, listener: socket.socket) -> socket.socket:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise QtestError(f"QEMU exited with status {self._proc.returncode}: {self.stderr_tail()}", device="qtest")
            try:
                conn, _ = listener.accept()
                return conn
            except socket.timeout:
                continue
        raise QtestError(f"QEMU did not connect within {self.timeout} s: {self.stderr_tail()}", device="qtest")

    def stderr_tail(self, n: int = 400) -> str:
        try:
            with open(self._stderr_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no output)"

    def _death_note(self) -> str:
        """QEMU's last words: give it a moment to exit so its stderr is complete."""
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return self.stderr_tail()

    @property
    def alive(self) -> bool:
        return self._sock is not None and self._proc.poll() is None

    # -- protocol -------------------------------------------------------------------------------
    def _readline(self) -> str:
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536) if self._sock else b""
            except (socket.timeout, TimeoutError):
                self.close()
                raise QtestError(f"QEMU did not answer within {self.timeout} s", device="qtest") from None
            except OSError as e:
                tail = self._death_note()
                self.close()
                raise QtestError(f"qtest socket failed ({e.strerror}): {tail}", device="qtest") from e
            if not chunk:
                tail = self._death_note()
                self.close()
                raise QtestError(f"QEMU closed the qtest socket: {tail}", device="qtest")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def command(self, line: str) -> str:
        """Send one qtest command; return what follows ``OK``. Raises QtestError (FAIL, death, timeout)."""
        if self._sock is None:
            raise QtestError("the QEMU machine is closed", device="qtest")
        try:
            self._sock.sendall(line.encode() + b"\n")
        except OSError as e:
            self.close()
            raise QtestError(f"qtest send failed: {e.strerror}", device="qtest") from e
        while True:
            reply = self._readline()
            if reply.startswith("IRQ"):  # asynchronous: "IRQ raise N" / "IRQ lower N"
                parts = reply.split()
                if len(parts) == 3 and parts[2].isdigit():
                    self.irqs[int(parts[2])] = parts[1] == "raise"
                continue
            if reply.startswith("OK"):
                return reply[2:].strip()
            raise QtestError(f"QEMU rejected {line.split()[0]!r}: {reply}", device="qtest")

    def load(self, addr: int, width: int) -> int:
        """One guest-physical load of *width* bytes. Raises QtestError."""
        return int(self.command(f"{_READ[width]} {addr:#x}"), 16)

    def store(self, addr: int, width: int, value: int) -> None:
        self.command(f"{_WRITE[width]} {addr:#x} {value:#x}")

    def memread(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        return base64.b64decode(self.command(f"b64read {addr:#x} {n:#x}"))

    def memwrite(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        if len(data):
            self.command(f"b64write {addr:#x} {len(data):#x} {base64.b64encode(bytes(data)).decode()}")

    def memset(self, addr: int, n: int, value: int) -> None:
        if n:
            self.command(f"memset {addr:#x} {n:#x} {value:#x}")

    def port_in(self, port: int, width: int) -> int:
        return int(self.command(f"{_IN[width]} {port:#x}"), 16)

    def port_out(self, port: int, width: int, value: int) -> None:
        self.command(f"{_OUT[width]} {port:#x} {value:#x}")

    # -- windows, memory, PCI ------------------------------------------------------------------------
    def region(self, addr: int, size: int, *, writable: bool = True, name: str | None = None, **options: object) -> Region:
        """A checked Region over guest-physical [addr, addr+size)."""
        return Region(QtestBackend(self, addr, size, writable=writable, name=name), **options)  # type: ignore[arg-type]

    def malloc(self, size: int, *, align: int = 4096) -> "GuestBuffer":
        """Zeroed guest RAM for DMA (first fit). Raises UsageError, HardwareError (guest RAM full)."""
        if size <= 0 or align <= 0 or align & (align - 1):
            raise UsageError(f"bad guest allocation size {size} align {align}")
        for i, (start, length) in enumerate(self._ram_free):
            addr = -(-start // align) * align
            if addr + size <= start + length:
                rest = [(s, n) for s, n in ((start, addr - start), (addr + size, start + length - addr - size)) if n]
                self._ram_free[i : i + 1] = rest
                buf = GuestBuffer(self, addr, size)
                buf.fill()
                return buf
        raise HardwareError(f"guest RAM exhausted allocating {size} bytes", device="qtest")

    def _release(self, addr: int, size: int) -> None:
        self._ram_free.append((addr, size))
        self._ram_free.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self._ram_free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self._ram_free = merged

    def _alloc_mmio(self, size: int) -> int:
        addr = -(-self._mmio_next // size) * size  # BARs are naturally aligned to their size
        if addr + size > MMIO_END:
            raise HardwareError("qtest MMIO window exhausted", device="qtest")
        self._mmio_next = addr + size
        return addr

    def pci(self, bdf: str) -> "QtestPci":
        """The guest's PCI function *bdf* (bus 0 on q35). Raises HardwareNotFound when absent."""
        bdf = normalize_bdf(bdf)
        if bdf in self._functions:  # one object per function: it remembers its assigned BARs
            return self._functions[bdf]
        bus, dev, fn = int(bdf[5:7], 16), int(bdf[8:10], 16), int(bdf[11])
        config = Region(QtestConfigBackend(self, bus, dev, fn), name=f"qtest:{bdf}/config")
        if config.r16(0) == 0xFFFF:
            raise HardwareNotFound(f"no PCI function {bdf} in the QEMU machine", device=bdf)
        self._functions[bdf] = QtestPci(self, bdf, config)
        return self._functions[bdf]

    def close(self) -> None:
        """Disconnect and kill QEMU (its process group); idempotent, never raises."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        elif hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "QtestMachine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QtestBackend(Backend):
    """A window of the guest's physical address space; each access is one qtest command."""

    def __init__(self, machine: QtestMachine, base: int, size: int, *, writable: bool = True, name: str | None = None) -> None:
        self.machine, self.base, self.size, self.writable = machine, base, size, writable
        self.name = name or f"qtest@{base:#x}"

    def load(self, offset: int, width: int) -> int:
        return self.machine.load(self.base + offset, width)

    def store(self, offset: int, width: int, value: int) -> None:
        self.machine.store(self.base + offset, width, value)

    def read_bytes(self, offset: int, n: int) -> bytes:
        return self.machine.memread(self.base + offset, n)

    def write_bytes(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.machine.memwrite(self.base + offset, data)

    def fill(self, offset: int, n: int, value: int) -> None:
        self.machine.memset(self.base + offset, n, value)


class QtestConfigBackend(Backend):
    """Legacy config mechanism #1 (ports CF8/CFC): one sized port access per config access."""

    def __init__(self, machine: QtestMachine, bus: int, dev: int, fn: int) -> None:
        self.machine, self.size, self.writable = machine, 256, True
        self.name = f"qtest:{bus:02x}:{dev:02x}.{fn}/config"
        self._address = 0x80000000 | bus << 16 | dev << 11 | fn << 8

    def load(self, offset: int, width: int) -> int:
        if width == 8:  # config cycles are at most 32 bits
            return self.load(offset, 4) | self.load(offset + 4, 4) << 32
        self.machine.port_out(0xCF8, 4, self._address | (offset & 0xFC))
        return self.machine.port_in(0xCFC + (offset & 3), width)

    def store(self, offset: int, width: int, value: int) -> None:
        if width == 8:
            self.store(offset, 4, value & 0xFFFFFFFF)
            self.store(offset + 4, 4, value >> 32)
            return
        self.machine.port_out(0xCF8, 4, self._address | (offset & 0xFC))
        self.machine.port_out(0xCFC + (offset & 3), width, value)


class QtestPci(PciFunction):
    """A PCI function inside the QEMU machine (no kernel owns it: no safety check needed)."""

    def __init__(self, machine: QtestMachine, bdf: str, config: Region) -> None:
        super().__init__(bdf, config)
        self.machine = machine
        self._bars: dict[int, Bar] = {}

    def assign_bars(self) -> list[Bar]:
        """Size every memory BAR, place it in the MMIO window, enable memory decode.

        No firmware ran (``-S``), so this is the BIOS's job done by hand; a second call returns
        the BARs already placed. Raises QtestError.
        """
        if self._bars:
            return list(self._bars.values())
        index = 0
        while index < 6:
            off = 0x10 + 4 * index
            orig = self.config.r32(off)
            if orig & 1:  # I/O BAR: not placed (no port allocator here)
                index += 1
                continue
            is64 = (orig >> 1) & 3 == 2
            self.config.w32(off, 0xFFFFFFFF)
            low = self.config.r32(off)
            high = 0xFFFFFFFF
            if is64:
                self.config.w32(off + 4, 0xFFFFFFFF)
                high = self.config.r32(off + 4)
            mask = (high << 32 | low) & ~0xF if is64 else low & ~0xF
            size = ((~mask) & ((1 << (64 if is64 else 32)) - 1)) + 1 if mask else 0
            if size:
                addr = self.machine._alloc_mmio(size)
                self.config.w32(off, addr & 0xFFFFFFFF)
                if is64:
                    self.config.w32(off + 4, addr >> 32)
                flags = 0x200 | (0x100000 if is64 else 0) | (0x2000 if orig & 8 else 0)
                self._bars[index] = Bar(index, addr, size, flags)
            else:
                self.config.w32(off, orig)
            index += 2 if is64 else 1
        self.enable_memory()
        return list(self._bars.values())

    def bars(self) -> list[Bar]:
        return list(self._bars.values())

    def map_bar(self, index: int, *, writable: bool = True, **options: object) -> Region:
        """A Region over an assigned BAR. Raises HardwareNotFound (not assigned: call assign_bars())."""
        bar = self._bars.get(index)
        if bar is None:
            raise HardwareNotFound(f"BAR{index} is not assigned; call assign_bars() first", device=self.bdf)
        return self.machine.region(bar.start, bar.size, writable=writable, name=f"qtest:{self.bdf}/BAR{index}", **options)


class GuestBuffer(DmaBuffer):
    """Guest RAM handed out by :meth:`QtestMachine.malloc`; ``device_addr`` is guest-physical."""

    def __init__(self, machine: QtestMachine, addr: int, size: int) -> None:
        self.machine, self.addr, self.size = machine, addr, size
        self.region = machine.region(addr, size, name=f"guest@{addr:#x}")
        self.freed = False

    def device_addr(self, offset: int = 0) -> int:
        """Raises RegionOutOfRange, HardwareError (freed)."""
        if self.freed:
            raise HardwareError("buffer was freed", device=f"guest@{self.addr:#x}")
        if not 0 <= offset < self.size:
            raise RegionOutOfRange(f"offset outside the {self.size}-byte buffer", device=f"guest@{self.addr:#x}", offset=offset)
        return self.addr + offset

    def free(self) -> None:
        if not self.freed:
            self.freed = True
            self.region.close()
            self.machine._release(self.addr, self.size)

    def __str__(self) -> str:
        return f"GuestBuffer({self.addr:#x}, {self.size} bytes{', freed' if self.freed else ''})"
