"""Actions behind the device commands (info, hexdump, trace, write-blocks, overlay).

Parsing lives in :mod:`fsproto.cli.device_cmds`; these functions take plain values, print
through a rich Console and raise :mod:`fsproto.errors` types for the frame to report.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import TYPE_CHECKING, BinaryIO, Iterator

from fsproto.blockdev.container import describe_container, display_name, sniff_container
from fsproto.blockdev.nbd import is_nbd_uri
from fsproto.blockdev.open import is_path_spec
from fsproto.cli.common import progress_bar
from fsproto.errors import GeometryError, OutOfRange, UsageError
from fsproto.rawdev import (
    BlockDevice,
    Overlay,
    PartitionTable,
    RawDevice,
    open_device,
    parse_spec,
    read_partition_table,
    read_trace,
    summarise,
)

if TYPE_CHECKING:  # rich is imported where a table is drawn: most commands never need it
    from rich.console import Console
    from rich.table import Table

MAX_HEXDUMP_BYTES = 64 << 20  # a hexdump of more than this is a mistake, not a request


def console() -> Console:
    """A console on the current stdout (tests swap it); wide enough for GUIDs when piped."""
    from rich.console import Console

    c = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    if not c.is_terminal:
        c = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=160)
    return c


def human(n: int) -> str:
    """Bytes as fdisk prints sizes (binary units, one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- info --------------------------------------------------------------------------------------
def _kind(spec: str, partition: int | None) -> str:
    path, number = parse_spec(spec, partition)
    if number is not None:
        return f"partition {number} of {path}"
    if is_nbd_uri(path):
        return "NBD export"
    try:
        st = os.stat(path)
    except OSError:
        return "unknown"
    if stat.S_ISBLK(st.st_mode):
        return "block device"
    container = sniff_container(path) if stat.S_ISREG(st.st_mode) else None
    return f"{display_name(container)} image" if container else "image file"


def _container_lines(spec: str, partition: int | None, dev: BlockDevice) -> list[str]:
    """``container:`` lines for a container image (qcow2, VMDK, VHD(X), VDI, E01); none for raw."""
    path, _ = parse_spec(spec, partition)
    if not is_path_spec(path) or not os.path.isfile(path):
        return []
    container = sniff_container(path)
    if container is None:
        return []
    file_size = os.path.getsize(path)
    described = describe_container(path) if container not in ("ewf", "ewf2") else None
    virtual = described.virtual_size if described else dev.size
    lines = [f"container:   {display_name(container)}, virtual size {virtual} bytes ({human(virtual)}), "
             f"file {file_size} bytes ({human(file_size)})"]
    for backing in described.backing_chain if described else ():
        lines.append(f"backing:     {backing}")
    return lines


def partition_table_view(table: PartitionTable) -> Table:
    """The table as fdisk -l would show it, plus GPT names and GUIDs."""
    from rich.table import Table

    title = f"{table.scheme.upper()} partition table, disk id {table.disk_id}, {table.sector_size}-byte sectors"
    t = Table(title=title, title_justify="left")
    for col, just in (("#", "right"), ("Start", "right"), ("End", "right"), ("Sectors", "right"),
                      ("Size", "right"), ("Type", "left"), ("Kind", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    gpt = table.scheme == "gpt"
    if gpt:
        t.add_column("Name")
        t.add_column("GUID")
    for p in table.partitions:
        kind = p.kind + (", boot" if p.bootable else "")
        row = [str(p.number), str(p.start), str(p.end), str(p.size), human(p.size_bytes),
               f"{p.type} {p.type_name}" if not gpt else p.type_name, kind]
        if gpt:
            row += [p.name, p.uuid]
        t.add_row(*row)
    return t


def info_record(spec: str, *, partition: int | None, force: bool) -> dict:
    """``info --json``: what the text shows, as data (partition sizes in sectors and bytes)."""
    with open_device(spec, partition=partition, force=force, block_size=None) as dev:
        rec: dict = {"device": dev.name, "kind": _kind(spec, partition), "size": dev.size,
                     "sector_size": dev.block_size, "sectors": dev.num_blocks}
        if isinstance(dev, RawDevice):
            rec["node"] = dev.dev_id
            rec["opened"] = "exclusively" if dev.exclusive else "forced"
        table = read_partition_table(dev)
    if table is None:
        rec["partition_table"] = None
        return rec
    rec["partition_table"] = {
        "scheme": table.scheme, "disk_id": table.disk_id, "sector_size": table.sector_size, "notes": list(table.notes),
        "partitions": [{"number": p.number, "start": p.start, "end": p.end, "sectors": p.size,
                        "size_bytes": p.size_bytes, "type": p.type, "type_name": p.type_name, "kind": p.kind,
                        "bootable": p.bootable, "name": p.name, "uuid": p.uuid} for p in table.partitions]}
    return rec


def info(spec: str, *, partition: int | None, force: bool, as_json: bool = False) -> int:
    """Print size, sector size and partition table of *spec*. Raises the opening and table errors."""
    if as_json:
        import json

        sys.stdout.write(json.dumps(info_record(spec, partition=partition, force=force), ensure_ascii=False) + "\n")
        return 0
    out = console()
    with open_device(spec, partition=partition, force=force, block_size=None) as dev:
        out.print(f"device:      {dev.name} ({_kind(spec, partition)})")
        out.print(f"size:        {dev.size} bytes ({human(dev.size)})")
        out.print(f"sector size: {dev.block_size} bytes, {dev.num_blocks} sectors")
        for line in _container_lines(spec, partition, dev):
            out.print(line)
        if isinstance(dev, RawDevice):
            out.print(f"node:        {dev.dev_id}, opened {'exclusively' if dev.exclusive else 'forced'}")
        table = read_partition_table(dev)
        if table is None:
            out.print("partitions:  none (no partition table)")
            return 0
        out.print(partition_table_view(table))
        for note in table.notes:
            out.print(f"note: {note}")
    return 0


# -- hexdump -----------------------------------------------------------------------------------
def hexdump_lines(chunks: Iterator[tuple[int, bytes]]) -> Iterator[str]:
    """``hexdump -C`` lines for (offset, data) chunks; repeated lines fold into ``*``."""
    prev: bytes | None = None
    folded = False
    end = 0
    for base, data in chunks:
        for i in range(0, len(data), 16):
            row = data[i : i + 16]
            off = base + i
            end = off + len(row)
            if row == prev and len(row) == 16:
                if not folded:
                    yield "*"
                    folded = True
                continue
            prev, folded = row, False
            hexes = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(f"{b:02x}" for b in row[8:])
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
            yield f"{off:08x}  {hexes:<48}  |{text}|"
    yield f"{end:08x}"


def hexdump(spec: str, *, lba: int, count: int, partition: int | None, block_size: int | None, force: bool) -> int:
    """Dump *count* blocks from *lba*. Raises OutOfRange before printing anything."""
    if lba < 0 or count < 1:
        raise UsageError(f"--lba must be >= 0 and --count >= 1 (got {lba}, {count})", device=spec)
    out = sys.stdout
    with open_device(spec, partition=partition, force=force, block_size=block_size) as dev:
        if lba + count > dev.num_blocks:
            raise OutOfRange(f"blocks {lba}..{lba + count - 1} are past the end ({dev.num_blocks} blocks)",
                             device=dev.name, lba=lba)
        if count * dev.block_size > MAX_HEXDUMP_BYTES:
            raise UsageError(f"{count} blocks is more than a hexdump should print; use a smaller --count",
                             device=dev.name)

        def chunks() -> Iterator[tuple[int, bytes]]:
            for b in range(lba, lba + count):  # one block at a time: memory stays flat
                yield b * dev.block_size, dev.read(b, 1)

        for line in hexdump_lines(chunks()):
            out.write(line + "\n")
    return 0


# -- trace -------------------------------------------------------------------------------------
def trace(path: str, *, summary: bool) -> int:
    """Print a trace file's records, or a per-op summary. Raises FormatError, DeviceNotFound."""
    from rich.table import Table

    header, records = read_trace(path)
    out = console()
    if not summary:
        w = sys.stdout.write
        w(f"# device {header.get('device', '?')}, block size {header.get('block_size', '?')}\n")
        w(f"{'time_us':>12} {'op':<5} {'lba':>12} {'count':>7} {'dur_us':>9} status\n")
        for r in records:
            w(f"{r.t_ns / 1000:12.1f} {r.op:<5} {r.lba:>12} {r.count:>7} {r.dur_ns / 1000:9.1f} {r.status}\n")
        return 0
    ops, span = summarise(records)
    bs = int(header.get("block_size", "0") or 0)
    t = Table(title=f"trace of {header.get('device', '?')}: {span / 1e9:.3f} s", title_justify="left")
    for col in ("op", "requests", "blocks", "bytes", "errors", "sequential", "busy", "LBA range", "sizes (blocks: n)"):
        t.add_column(col, justify="left" if col in ("op", "LBA range", "sizes (blocks: n)") else "right")
    for op in ("read", "write", "flush"):
        s = ops.get(op)
        if s is None:
            continue
        top = sorted(s.sizes.items(), key=lambda kv: -kv[1])[:4]
        lba_range = "" if s.lba_min is None else f"{s.lba_min}..{s.lba_max}"
        t.add_row(op, str(s.ops), str(s.blocks), human(s.blocks * bs), str(s.errors),
                  f"{100 * s.sequential / s.ops:.0f}%" if op != "flush" else "", f"{s.busy_ns / 1e6:.1f} ms",
                  lba_range, ", ".join(f"{k}: {v}" for k, v in top))
    out.print(t)
    return 0


# -- write-blocks and overlay ------------------------------------------------------------------
def write_blocks(spec: str, *, lba: int, source: BinaryIO, partition: int | None, block_size: int | None,
                 writable: bool, overlay: str | None, force: bool) -> int:
    """Write the bytes of *source* at *lba*. Read-only unless *writable* (then ReadOnlyError)."""
    data = source.read(MAX_HEXDUMP_BYTES + 1)
    if len(data) > MAX_HEXDUMP_BYTES:
        raise UsageError(f"input larger than {MAX_HEXDUMP_BYTES} bytes; write it in pieces", device=spec)
    with open_device(spec, partition=partition, block_size=block_size, writable=writable, overlay=overlay,
                     force=force) as dev:
        if len(data) % dev.block_size or not data:
            raise GeometryError(f"input of {len(data)} bytes is not a positive multiple of the block size "
                                f"{dev.block_size}", device=dev.name, lba=lba)
        dev.write(lba, data)
        dev.flush()
        sys.stdout.write(f"wrote {len(data) // dev.block_size} block(s) at lba {lba} of {dev.name}\n")
    return 0


def overlay_apply(spec: str, sidecar: str, *, commit: bool, partition: int | None, block_size: int | None,
                  force: bool) -> int:
    """Commit (to the device, opened writable) or discard the overlay *sidecar* of *spec*."""
    if not os.path.isfile(sidecar):
        raise UsageError(f"no overlay sidecar {sidecar}", device=spec)
    base: BlockDevice = open_device(spec, partition=partition, block_size=block_size, writable=commit, force=force)
    try:
        ov = Overlay(base, sidecar, force=force)
    except BaseException:
        base.close()
        raise
    with ov:
        if commit:
            with progress_bar("committing overlay", enabled=sys.stderr.isatty()) as progress:
                n = ov.commit(progress)
        else:
            n = ov.discard()
    sys.stdout.write(f"{'committed' if commit else 'discarded'} {n} block(s) of {sidecar}\n")
    return 0
