"""One scripted CMS workload, applied by fsproto (offline API) or by the reference (a guest
shell script), with a plain model of what every file must then hold.

The same op list drives both directions of the compatibility tests and the twins check:
:func:`apply_fsproto` runs it through :class:`fsproto.vfs.Filesystem`, :func:`to_shell`
turns it into busybox ``sh`` for cmsfs-fuse, :func:`expected` computes the view (keys as in
:mod:`fsproto.testing.cmsref.inspect`) that both must show.

The reference's limits decide what :func:`to_shell` accepts (``../shared/specs/cms-edf.md``):
only appends, truncates that shrink (a V file only to 0), no record over 65535 bytes, text
written through ``-a`` in one ``write`` per op (kept under 4 KiB). Ops only fsproto can do
(overwrites, cutting V records, >65535-byte writes) are allowed in workloads that
:func:`apply_fsproto` runs and the reference then only reads.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import hashlib
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from fsproto.errors import UsageError

MAX_V_RECORD = 65535
FROZEN = "2024-03-15 12:00:00"  # the clock both sides run with (cmsfs-fuse: libfaketime)


def frozen_epoch(date: str = FROZEN) -> float:
    """*date* (``YYYY-MM-DD HH:MM:SS``, UTC) as seconds since the epoch."""
    return float(calendar.timegm(_dt.datetime.strptime(date, "%Y-%m-%d %H:%M:%S").timetuple()))


@dataclass(frozen=True)
class Create:
    path: str  # "/NAME.TYPE"
    recfm: str = "V"
    lrecl: int = 0
    mode: str = "A1"


@dataclass(frozen=True)
class Records:
    """Append binary records: V = one write per record; F = the bytes, padded to LRECL."""

    path: str
    records: tuple[bytes, ...]


@dataclass(frozen=True)
class Text:
    """Append lines through the text view (``-a``); ISO-8859-1 characters only."""

    path: str
    text: str


@dataclass(frozen=True)
class Truncate:
    path: str
    size: int  # in the binary view


@dataclass(frozen=True)
class Overwrite:
    """fsproto only: write *data* at *offset* of the binary view (inside or past the end)."""

    path: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class Touch:
    path: str
    date: str  # "YYYY-MM-DD HH:MM:SS", UTC


Op = Union[Create, Records, Text, Truncate, Overwrite, Rename, Delete, Touch]


@dataclass
class _File:
    recfm: str
    lrecl: int
    mode: str
    records: list[bytes] = field(default_factory=list)
    date: str = FROZEN

    def binary(self) -> bytes:
        return b"".join(self.records)


# -- the model ------------------------------------------------------------------------------------


def _text_records(text: str, recfm: str, lrecl: int) -> list[bytes]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a trailing newline ends the last line; it does not start a new one
    out = []
    for line in lines:
        rec = line.encode("cp1047")
        if recfm == "F":
            if len(rec) > lrecl:
                raise UsageError(f"line of {len(rec)} bytes does not fit LRECL {lrecl}")
            rec = rec + b"\x40" * (lrecl - len(rec))  # blank-padded
        elif not rec:
            rec = b"\x40"  # an empty V line is stored as one blank
        out.append(rec)
    return out


def _v_cut(records: list[bytes], size: int) -> list[bytes]:
    out, total = [], 0
    for rec in records:
        if total >= size:
            break
        out.append(rec[: size - total])
        total += len(out[-1])
    if total < size:
        out.append(b"\0" * (size - total))  # truncate up: zero bytes as one more record
    return out


def _v_write(records: list[bytes], offset: int, data: bytes) -> list[bytes]:
    """fsproto's V semantics: bytes inside records are overwritten in place (boundaries kept);
    what lies past the end becomes new records, split at 65535, a gap becomes zero bytes."""
    flat = bytearray(b"".join(records))
    end = len(flat)
    inside = data[: max(0, end - offset)] if offset < end else b""
    flat[offset : offset + len(inside)] = inside
    out, pos = [], 0
    for rec in records:
        out.append(bytes(flat[pos : pos + len(rec)]))
        pos += len(rec)
    tail = (b"\0" * max(0, offset - end)) + data[len(inside) :]
    for i in range(0, len(tail), MAX_V_RECORD):
        out.append(tail[i : i + MAX_V_RECORD])
    return out


def model(ops: list[Op]) -> tuple[list[str], dict[str, _File]]:
    """Directory order (dense: a delete moves the last FST into the freed slot) and files."""
    order: list[str] = []
    files: dict[str, _File] = {}
    for op in ops:
        if isinstance(op, Create):
            order.append(op.path)
            files[op.path] = _File(op.recfm, op.lrecl, op.mode)
        elif isinstance(op, Records):
            f = files[op.path]
            if f.recfm == "V":
                f.records += list(op.records)
            else:
                data = b"".join(op.records)
                data += b"\0" * (-len(data) % f.lrecl)  # a partial F record is zero-padded
                f.records += [data[i : i + f.lrecl] for i in range(0, len(data), f.lrecl)]
        elif isinstance(op, Text):
            f = files[op.path]
            f.records += _text_records(op.text, f.recfm, f.lrecl)
        elif isinstance(op, Truncate):
            f = files[op.path]
            if f.recfm == "F":
                data = f.binary()[: op.size]
                data += b"\0" * (op.size - len(data))
                data += b"\0" * (-len(data) % f.lrecl)
                f.records = [data[i : i + f.lrecl] for i in range(0, len(data), f.lrecl)]
            else:
                f.records = _v_cut(f.records, op.size)
        elif isinstance(op, Overwrite):
            f = files[op.path]
            if f.recfm == "V":
                f.records = _v_write(f.records, op.offset, op.data)
            else:
                data = bytearray(f.binary())
                data += b"\0" * max(0, op.offset + len(op.data) - len(data))
                data[op.offset : op.offset + len(op.data)] = op.data
                data += b"\0" * (-len(data) % f.lrecl)
                f.records = [bytes(data[i : i + f.lrecl]) for i in range(0, len(data), f.lrecl)]
        elif isinstance(op, Rename):
            order[order.index(op.old)] = op.new
            files[op.new] = files.pop(op.old)
        elif isinstance(op, Delete):
            i = order.index(op.path)
            last = order.pop()
            if i < len(order):
                order[i] = last
            del files[op.path]
        elif isinstance(op, Touch):
            files[op.path].date = op.date
    return order, files


def expected(ops: list[Op]) -> list[dict[str, Any]]:
    """What every file must look like afterwards, in directory order (inspect's keys)."""
    order, files = model(ops)
    out = []
    for slot, path in enumerate(order, start=2):
        f = files[path]
        binary = f.binary()
        text = b"".join(r.decode("cp1047").encode("latin-1") + b"\n" for r in f.records)
        name, _dot, ftype = path[1:].partition(".")
        out.append(
            {
                "path": path[1:], "name": name, "type": ftype, "slot": slot, "mode": f.mode, "recfm": f.recfm,
                "lrecl": f.lrecl if f.recfm == "F" else max((len(r) for r in f.records), default=0),
                "records": len(f.records), "size_binary": len(binary),
                "sha256_binary": hashlib.sha256(binary).hexdigest(),
                "text": {"size": len(text), "sha256": hashlib.sha256(text).hexdigest()},
                "date": f.date,
                # 0x15/0x25 are NEL/LF: code page tables disagree on them (see docs/cms-reference.md)
                "newline_bytes": any(b"\x15" in r or b"\x25" in r for r in f.records),
            }
        )
    return out


# -- fsproto -----------------------------------------------------------------------------------------


def apply_fsproto(open_fs: Callable[[bool], Any], ops: list[Op]) -> None:
    """Run *ops* through fsproto; ``open_fs(text)`` opens the filesystem in that view.

    Only one view is open at a time (two would cache the same directory twice).
    """
    text_mode = False
    fs = open_fs(False)
    try:
        for op in ops:
            want_text = isinstance(op, Text)
            if want_text != text_mode:
                fs.close()
                fs = open_fs(want_text)
                text_mode = want_text
            if isinstance(op, Create):
                fs.create(op.path)
                if op.recfm != "V" or op.lrecl:
                    fs.setxattr(op.path, "user.record_format", op.recfm.encode())
                    fs.setxattr(op.path, "user.record_lrecl", str(op.lrecl).encode())
                if op.mode != "A1":
                    fs.setxattr(op.path, "user.file_mode", op.mode.encode())
            elif isinstance(op, Records):
                recfm = fs.getxattr(op.path, "user.record_format").decode()
                chunks = op.records if recfm == "V" else (b"".join(op.records),)
                for chunk in chunks:
                    fs.write(op.path, fs.stat(op.path).size, chunk)
            elif isinstance(op, Text):
                fs.write(op.path, fs.stat(op.path).size, op.text.encode("utf-8"))
            elif isinstance(op, Truncate):
                fs.truncate(op.path, op.size)
            elif isinstance(op, Overwrite):
                fs.write(op.path, op.offset, op.data)
            elif isinstance(op, Rename):
                fs.rename(op.old, op.new)
            elif isinstance(op, Delete):
                fs.unlink(op.path)
            elif isinstance(op, Touch):
                fs.set_mtime(op.path, int(frozen_epoch(op.date)) * 1_000_000_000)
    finally:
        fs.close()


# -- the reference -------------------------------------------------------------------------------------


def to_shell(ops: list[Op], disk: str, tag: str) -> tuple[str, dict[str, bytes]]:
    """Busybox sh applying *ops* with cmsfs-fuse on *disk* (e.g. ``$DISK1``), and its inputs.

    Binary ops run on a ``-o big_writes,direct_io`` mount, so each ``write`` is one request
    and (for V files) one record; text ops on a ``-a`` mount. Raises UsageError for an op
    the reference cannot do.
    """
    lines: list[str] = []
    inputs: dict[str, bytes] = {}
    mounted = ""
    mnt = f"/w{tag}"
    recfm: dict[str, tuple[str, int]] = {}

    def mount(kind: str) -> None:
        nonlocal mounted
        if mounted == kind:
            return
        if mounted:
            lines.append(f"cms_umount {mnt} || exit 1")
        opts = "-a" if kind == "text" else "-o big_writes,direct_io"
        lines.append(f'cms_mount "{disk}" {mnt} {opts}')
        mounted = kind

    def put(data: bytes) -> str:
        name = f"{tag}/{len(inputs)}"
        inputs[name] = data
        return f"$IN/{name}"

    for op in ops:
        if isinstance(op, Text):
            mount("text")
        else:
            mount("binary")
        q = lambda p: shlex.quote(mnt + p)  # noqa: E731
        if isinstance(op, Create):
            recfm[op.path] = (op.recfm, op.lrecl)
            lines.append(f": > {q(op.path)}")
            if op.recfm != "V" or op.lrecl:
                lines.append(f"setfattr -n user.record_format -v {op.recfm} {q(op.path)}")
                lines.append(f"setfattr -n user.record_lrecl -v {op.lrecl} {q(op.path)}")
            if op.mode != "A1":
                lines.append(f"setfattr -n user.file_mode -v {op.mode} {q(op.path)}")
        elif isinstance(op, Records):
            fmt, lrecl = recfm[op.path]
            if fmt == "F":
                bs = lrecl * max(1, 32768 // lrecl)  # whole records per write
                lines.append(f"dd if={put(b''.join(op.records))} of={q(op.path)} bs={bs} iflag=fullblock "
                             "conv=notrunc oflag=append 2> /dev/null")
                continue
            i = 0
            while i < len(op.records):  # a run of equal-sized records: one dd, one write each
                size = len(op.records[i])
                if not 0 < size <= MAX_V_RECORD:
                    raise UsageError(f"the reference cannot write a V record of {size} bytes")
                j = i
                while j < len(op.records) and len(op.records[j]) == size:
                    j += 1
                lines.append(f"dd if={put(b''.join(op.records[i:j]))} of={q(op.path)} bs={size} iflag=fullblock "
                             "conv=notrunc oflag=append 2> /dev/null")
                i = j
        elif isinstance(op, Text):
            data = op.text.encode("latin-1")
            if len(data) > 4096:
                raise UsageError("text ops for the reference stay under 4 KiB (one write)")
            lines.append(f"cat {put(data)} >> {q(op.path)}")
        elif isinstance(op, Truncate):
            if recfm[op.path][0] == "V" and op.size:
                raise UsageError("the reference truncates V files only to 0")
            lines.append(f"truncate -s {op.size} {q(op.path)}")
        elif isinstance(op, Overwrite):
            raise UsageError("the reference only appends")
        elif isinstance(op, Rename):
            recfm[op.new] = recfm.pop(op.old)
            lines.append(f"mv {q(op.old)} {q(op.new)}")
        elif isinstance(op, Delete):
            lines.append(f"rm {q(op.path)}")
        elif isinstance(op, Touch):
            lines.append(f"touch -d {shlex.quote(op.date)} {q(op.path)}")
    if mounted:
        lines.append(f"cms_umount {mnt} || exit 1")
    return "\n".join(lines) + "\n", inputs
