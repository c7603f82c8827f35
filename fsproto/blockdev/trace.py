"""Trace: record every I/O of a device to a file; read such a file back and summarise it.

The trace is a text file, one record per line, tab-separated, so ``grep``/``awk`` work on it::

    # fsproto-trace 1 device=<name> block_size=<bytes> num_blocks=<n> start_unix_ns=<t>
    <t_ns> <op> <lba> <count> <dur_ns> <status>

``t_ns`` is the monotonic time since the trace started at which the operation began,
``op`` one of ``read``/``write``/``flush``, ``status`` ``ok`` or the error's class name (a
failed I/O is recorded, then the error propagates). Lines are buffered and written in
batches; :meth:`TracingDevice.flush` and ``close`` push them out.

:func:`read_trace` streams records back (bad lines raise FormatError naming the file and line);
:func:`summarise` folds them into counts with memory bounded by the number of distinct request
sizes, not by the trace's length.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterator

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.wrap import WrappedDevice
from fsproto.errors import DeviceError, DeviceNotFound, FormatError, FsprotoError

TRACE_MAGIC = "# fsproto-trace 1"
OPS = ("read", "write", "flush")
_BATCH = 256


@dataclass(frozen=True)
class TraceRecord:
    t_ns: int
    op: str
    lba: int
    count: int
    dur_ns: int
    status: str = "ok"


class TracingDevice(WrappedDevice):
    """Wraps *inner*, appending one line per read, write and flush to *path* (truncated first)."""

    def __init__(self, inner: BlockDevice, path: str | os.PathLike[str], *, owns_inner: bool = True) -> None:
        """Raises DeviceError when the trace file cannot be created."""
        super().__init__(inner, inner.name, inner.block_size, inner.num_blocks, owns_inner=owns_inner)
        self._path = os.fspath(path)
        try:
            self._file = open(self._path, "w", encoding="ascii")
        except OSError as e:
            raise DeviceError(f"cannot create trace file {self._path}: {e.strerror}", device=inner.name) from e
        self._file.write(
            f"{TRACE_MAGIC} device={inner.name.replace(' ', '_')} block_size={inner.block_size} "
            f"num_blocks={inner.num_blocks} start_unix_ns={time.time_ns()}\n"
        )
        self._t0 = time.monotonic_ns()
        self._pending: list[str] = []

    @property
    def path(self) -> str:
        return self._path

    def _record(self, op: str, lba: int, count: int, t: int, status: str) -> None:
        now = time.monotonic_ns()
        self._pending.append(f"{t - self._t0}\t{op}\t{lba}\t{count}\t{now - t}\t{status}\n")
        if len(self._pending) >= _BATCH:
            self._spill()

    def _spill(self) -> None:
        if self._pending:
            self._file.write("".join(self._pending))
            self._pending.clear()

    def _read(self, lba: int, count: int) -> bytes:
        t = time.monotonic_ns()
        try:
            data = self._inner.read(lba, count)
        except FsprotoError as e:
            self._record("read", lba, count, t, type(e).__name__)
            raise
        self._record("read", lba, count, t, "ok")
        return data

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        t = time.monotonic_ns()
        count = len(data) // self._block_size
        try:
            self._inner.write(lba, data)
        except FsprotoError as e:
            self._record("write", lba, count, t, type(e).__name__)
            raise
        self._record("write", lba, count, t, "ok")

    def _flush(self) -> None:
        t = time.monotonic_ns()
        try:
            self._inner.flush()
        finally:
            self._record("flush", 0, 0, t, "ok")
            self._spill()
            self._file.flush()

    def _close(self) -> None:
        try:
            self._spill()
            self._file.close()
        finally:
            super()._close()


def read_trace(path: str | os.PathLike[str]) -> tuple[dict[str, str], Iterator[TraceRecord]]:
    """(header fields, record iterator) of the trace at *path*.

    Raises DeviceNotFound, FormatError (not a trace; a malformed line, naming its number).
    """
    path = os.fspath(path)
    try:
        f = open(path, encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise DeviceNotFound("no such trace file", device=path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a trace file", device=path) from None
    except OSError as e:
        raise DeviceError(f"cannot open trace: {e.strerror}", device=path) from e
    first = f.readline(4096)
    if not first.startswith(TRACE_MAGIC):
        f.close()
        raise FormatError("not an fsproto trace (no header line)", device=path, struct="line 1")
    header = dict(kv.split("=", 1) for kv in first[len(TRACE_MAGIC) :].split() if "=" in kv)

    def records() -> Iterator[TraceRecord]:
        with f:
            for n, line in enumerate(f, start=2):
                parts = line.rstrip("\n").split("\t")
                try:
                    if len(parts) != 6 or parts[1] not in OPS:
                        raise ValueError
                    yield TraceRecord(int(parts[0]), parts[1], int(parts[2]), int(parts[3]), int(parts[4]), parts[5])
                except ValueError:
                    raise FormatError(f"malformed trace record {line[:60]!r}", device=path, struct=f"line {n}") from None

    return header, records()


@dataclass
class OpSummary:
    ops: int = 0
    blocks: int = 0
    errors: int = 0
    busy_ns: int = 0
    sequential: int = 0  # requests starting where the previous one of the same op ended
    sizes: dict[int, int] = field(default_factory=dict)  # request size in blocks -> how many
    lba_min: int | None = None
    lba_max: int | None = None


def summarise(records: Iterator[TraceRecord]) -> tuple[dict[str, OpSummary], int]:
    """Per-op totals and the trace's span in ns (first start to last end)."""
    out: dict[str, OpSummary] = {}
    next_lba: dict[str, int] = {}
    first = last = None
    for r in records:
        s = out.setdefault(r.op, OpSummary())
        s.ops += 1
        s.busy_ns += r.dur_ns
        first = r.t_ns if first is None else first
        last = max(last or 0, r.t_ns + r.dur_ns)
        if r.status != "ok":
            s.errors += 1
        if r.op == "flush":
            continue
        s.blocks += r.count
        s.sizes[r.count] = s.sizes.get(r.count, 0) + 1
        if next_lba.get(r.op) == r.lba:
            s.sequential += 1
        next_lba[r.op] = r.lba + r.count
        s.lba_min = r.lba if s.lba_min is None else min(s.lba_min, r.lba)
        s.lba_max = r.lba + r.count - 1 if s.lba_max is None else max(s.lba_max, r.lba + r.count - 1)
    return out, (last - first) if first is not None and last is not None else 0
