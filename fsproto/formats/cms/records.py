"""Record streams: the bytes of a file's data blocks in order, and its F/V records.

References: shared/specs/cms-edf.md "Records" and "What the reference shows". A file's *stream*
is its data blocks concatenated (null blocks read as zeros). F: records of LRECL bytes back to
back. V: each record is a 2-byte big-endian length (1..65535) and that many bytes; headers may
split across blocks.

:class:`FileMap` caches a file's tree and, for V files, its record index (header offsets and
binary offsets) while the filesystem is open, so reads at any offset cost O(log records +
bytes read), never a rescan.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass

from fsproto.errors import FormatError, InvalidOperation
from fsproto.formats.cms.layout import EBCDIC_BLANK
from fsproto.formats.cms.pointers import Tree
from fsproto.formats.cms.volume import Volume

_CHUNK_BLOCKS = 256  # blocks per device read when streaming
_SCRATCH_MAX = 16 << 20  # reads spanning more stream bytes than this allocate instead of reusing


@dataclass
class FileMap:
    """Everything needed to read a file at any offset without re-walking its metadata."""

    recfm: str  # "F" or "V"
    lrecl: int
    nrec: int
    tree: Tree
    stream_len: int = 0  # bytes of the stream in use
    rec_pos: array | None = None  # V: stream offset of each record's header
    rec_len: array | None = None  # V: each record's length
    rec_bin: array | None = None  # V: binary-view offset of each record (nrec + 1 entries)

    @property
    def binary_size(self) -> int:
        if self.recfm == "F":
            return self.nrec * self.lrecl
        return self.rec_bin[self.nrec]


def stream_parts(vol: Volume, tree: Tree, start: int, end: int) -> list[memoryview]:
    """Stream bytes [start, end) (clipped to the leaves) as views into one device read per
    physically contiguous run: joining them is the only copy a read makes (large allocations,
    not Python, are what reads cost here).
    """
    bs = vol.block_size
    end = min(end, len(tree.leaves) * bs)
    if start >= end:
        return []
    first, last = start // bs, (end - 1) // bs
    leaves = tree.leaves
    parts: list[memoryview] = []
    j = first
    while j <= last:
        b = leaves[j]
        k = j + 1
        if b == 0:
            while k <= last and leaves[k] == 0:
                k += 1
            data = memoryview(bytes((k - j) * bs))
        else:
            while k <= last and leaves[k] == b + (k - j) and k - j < 4 * _CHUNK_BLOCKS:
                k += 1
            data = memoryview(vol.read_blocks(b, k - j))
        lo = j * bs
        parts.append(data[max(0, start - lo) : min(len(data), end - lo)])
        j = k
    return parts


def fill_stream(vol: Volume, tree: Tree, first: int, last: int, buf: memoryview) -> None:
    """Read leaves *first*..*last* into *buf* back to back (null blocks as zeros), one device
    read per physically contiguous run."""
    bs = vol.block_size
    leaves = tree.leaves
    j = first
    while j <= last:
        b = leaves[j]
        k = j + 1
        if b == 0:
            while k <= last and leaves[k] == 0:
                k += 1
            buf[(j - first) * bs : (k - first) * bs] = bytes((k - j) * bs)
        else:
            while k <= last and leaves[k] == b + (k - j) and k - j < 4 * _CHUNK_BLOCKS:
                k += 1
            vol.read_blocks_into(b, buf[(j - first) * bs : (k - first) * bs])
        j = k


def read_stream(vol: Volume, tree: Tree, start: int, end: int) -> bytes:
    """Stream bytes [start, end) as bytes."""
    parts = stream_parts(vol, tree, start, end)
    if len(parts) == 1 and isinstance(parts[0].obj, bytes) and len(parts[0]) == len(parts[0].obj):
        return parts[0].obj
    return b"".join(parts)


def _pieces(parts: list[memoryview], base: int, segs: list[tuple[int, int]]) -> list[memoryview]:
    """Cut stream *segs* (offset, length), sorted, out of *parts* that start at stream offset *base*."""
    out: list[memoryview] = []
    pi, p_lo = 0, base
    for a, n in segs:
        z = a + n
        while a < z:
            while p_lo + len(parts[pi]) <= a:
                p_lo += len(parts[pi])
                pi += 1
            part = parts[pi]
            take = min(z, p_lo + len(part)) - a
            out.append(part[a - p_lo : a - p_lo + take])
            a += take
    return out


def index_v_records(vol: Volume, tree: Tree, nrec: int, *, what: str) -> FileMap:
    """Scan a V file's headers once. Raises FormatError for a zero length or a record past the blocks."""
    bs = vol.block_size
    leaves = tree.leaves
    total = len(leaves) * bs
    rec_pos = array("Q")
    rec_len = array("I")
    rec_bin = array("Q", [0])
    pos = 0
    binoff = 0
    win_start, win = 0, b""
    for r in range(nrec):
        if pos + 2 > total:
            raise FormatError(f"{what}: record {r + 1} header at stream offset {pos} is past the file's "
                              f"{len(tree.leaves)} blocks", device=vol.name, struct="V record")
        if not (win_start <= pos and pos + 2 <= win_start + len(win)):
            j = pos // bs
            win_start = j * bs
            # Short records: read ahead; long ones: just the block(s) holding this header, read
            # straight from the device (one call per header: this loop is the whole index cost).
            if r and rec_len[-1] < bs:
                win = read_stream(vol, tree, win_start, win_start + _CHUNK_BLOCKS * bs)
            elif pos % bs != bs - 1:
                win = vol.read_blocks(leaves[j], 1)
            else:  # a header split over two blocks
                win = read_stream(vol, tree, win_start, win_start + 2 * bs)
        o = pos - win_start
        length = (win[o] << 8) | win[o + 1]
        if length == 0 or pos + 2 + length > total:
            j = pos // bs
            raise FormatError(f"{what}: record {r + 1} has bad length {length}", device=vol.name,
                              block=tree.leaves[j], offset=pos % bs, struct="V record")
        rec_pos.append(pos)
        rec_len.append(length)
        binoff += length
        rec_bin.append(binoff)
        pos += 2 + length
    return FileMap("V", 0, nrec, tree, pos, rec_pos, rec_len, rec_bin)


def read_binary(vol: Volume, fm: FileMap, offset: int, size: int) -> bytes:
    """The binary view: F = the stream up to records*LRECL; V = record bytes without headers."""
    total = fm.binary_size
    if offset >= total or size <= 0:
        return b""
    end = min(total, offset + size)
    if fm.recfm == "F":
        return read_stream(vol, fm.tree, offset, end)
    rec_bin, rec_pos = fm.rec_bin, fm.rec_pos
    i = bisect_right(rec_bin, offset) - 1
    j = bisect_right(rec_bin, end - 1) - 1  # last record touched
    s_start = rec_pos[i] + 2 + (offset - rec_bin[i])
    s_end = rec_pos[j] + 2 + (end - rec_bin[j])
    segs = [(s_start, rec_pos[i] + 2 + fm.rec_len[i] - s_start if i < j else s_end - s_start)]
    for r in range(i + 1, j + 1):
        a = rec_pos[r] + 2
        segs.append((a, fm.rec_len[r] if r < j else s_end - a))
    bs = vol.block_size
    first, last = s_start // bs, (s_end - 1) // bs
    span = (last - first + 1) * bs
    if span > _SCRATCH_MAX:
        return b"".join(_pieces(stream_parts(vol, fm.tree, s_start, s_end), s_start, segs))
    # The blocks go into the volume's reusable buffer and the record bytes are joined out of
    # it: the result is the only fresh allocation, as for a plain pread of the same size.
    buf = vol.take_scratch(span)
    try:
        view = memoryview(buf)
        fill_stream(vol, fm.tree, first, last, view)
        return b"".join(_pieces([view[s_start - first * bs : s_end - first * bs]], s_start, segs))
    finally:
        vol.give_scratch(buf)


def iter_records(vol: Volume, fm: FileMap):
    """Yield every record's bytes in order (bounded memory: one chunk of blocks at a time)."""
    bs = vol.block_size
    if fm.recfm == "F":
        step = max(1, (_CHUNK_BLOCKS * bs) // max(fm.lrecl, 1))
        for r0 in range(0, fm.nrec, step):
            r1 = min(fm.nrec, r0 + step)
            chunk = read_stream(vol, fm.tree, r0 * fm.lrecl, r1 * fm.lrecl)
            for r in range(r1 - r0):
                yield chunk[r * fm.lrecl : (r + 1) * fm.lrecl]
        return
    r = 0
    while r < fm.nrec:
        start = fm.rec_pos[r] + 2
        # Group records into ~1 MiB windows.
        r1 = r + 1
        while r1 < fm.nrec and fm.rec_pos[r1] + 2 + fm.rec_len[r1] - start <= _CHUNK_BLOCKS * bs:
            r1 += 1
        end = fm.rec_pos[r1 - 1] + 2 + fm.rec_len[r1 - 1]
        chunk = read_stream(vol, fm.tree, start, end)
        for k in range(r, r1):
            a = fm.rec_pos[k] + 2 - start
            yield chunk[a : a + fm.rec_len[k]]
        r = r1


# -- text view ---------------------------------------------------------------------------------


def records_to_text(records, codepage: str) -> bytes:
    """Each record decoded with *codepage* plus "\\n", as UTF-8 (F records keep trailing blanks)."""
    return b"".join(rec.decode(codepage).encode("utf-8") + b"\n" for rec in records)


def text_to_records(data: bytes, codepage: str, recfm: str, lrecl: int) -> list[bytes]:
    """Lines -> records: F lines blank-padded to LRECL (longer is InvalidOperation), an empty V line
    is one blank, a last line without "\\n" is still a record. Raises InvalidOperation.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidOperation(f"text is not UTF-8 at byte {e.start}") from None
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    out: list[bytes] = []
    blank = bytes([EBCDIC_BLANK])
    for n, line in enumerate(lines, 1):
        try:
            rec = line.encode(codepage)
        except UnicodeEncodeError as e:
            raise InvalidOperation(f"line {n}: {line[e.start]!r} has no {codepage} code") from None
        if recfm == "F":
            if len(rec) > lrecl:
                raise InvalidOperation(f"line {n} is {len(rec)} bytes, longer than LRECL {lrecl}")
            rec = rec + blank * (lrecl - len(rec))
        elif not rec:
            rec = blank
        elif len(rec) > 65535:
            raise InvalidOperation(f"line {n} is {len(rec)} bytes; a V record holds at most 65535")
        out.append(rec)
    return out
