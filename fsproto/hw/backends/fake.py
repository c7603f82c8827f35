"""FakeBackend: in-process memory with an access log and per-register hooks, for unit tests.

Each load/store is recorded as an :class:`Access` (op, offset, width, value), so a test can
prove that a register write was one store of the right width and that nothing read-modify-
wrote a doorbell. Hooks model register semantics (read-to-clear, RW1C, doorbells) in a few
lines; unhooked offsets behave as little-endian RAM. No buffer is exposed, so every access
goes through :meth:`load`/:meth:`store` and is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fsproto.errors import AccessDenied
from fsproto.hw.backends.base import Backend

ReadHook = Callable[[int], int]  # (width) -> value
WriteHook = Callable[[int, int], None]  # (width, value)


@dataclass(frozen=True)
class Access:
    op: str  # "r" or "w"
    offset: int
    width: int  # bytes
    value: int


class FakeBackend(Backend):
    """``size`` bytes of zeroed memory; ``on_read``/``on_write`` map offsets to hooks."""

    def __init__(self, size: int, *, writable: bool = True, name: str = "fake") -> None:
        self.name = name
        self.size = size
        self.writable = writable
        self.mem = bytearray(size)
        self.accesses: list[Access] = []
        self.on_read: dict[int, ReadHook] = {}
        self.on_write: dict[int, WriteHook] = {}

    def load(self, offset: int, width: int) -> int:
        hook = self.on_read.get(offset)
        value = hook(width) if hook else int.from_bytes(self.mem[offset : offset + width], "little")
        self.accesses.append(Access("r", offset, width, value))
        return value

    def store(self, offset: int, width: int, value: int) -> None:
        if not self.writable:
            raise AccessDenied("fake backend is read-only", device=self.name, offset=offset)
        self.accesses.append(Access("w", offset, width, value))
        hook = self.on_write.get(offset)
        if hook:
            hook(width, value)
        else:
            self.mem[offset : offset + width] = value.to_bytes(width, "little")

    def poke_raw(self, offset: int, width: int, value: int) -> None:
        """Set memory as the 'device' would, without logging an access."""
        self.mem[offset : offset + width] = value.to_bytes(width, "little")

    def peek_raw(self, offset: int, width: int) -> int:
        return int.from_bytes(self.mem[offset : offset + width], "little")

    def read_bytes(self, offset: int, n: int) -> bytes:
        return bytes(self.mem[offset : offset + n])

    def write_bytes(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if not self.writable:
            raise AccessDenied("fake backend is read-only", device=self.name, offset=offset)
        self.mem[offset : offset + len(data)] = data
