"""Finding, validating and addressing a CMS EDF volume on a block device.

References: shared/specs/cms-edf.md ("Blocks", "The volume label"); cmsfs-fuse's label search
order (block devices: 2x then 1x the sector size; images: byte 4096, 512, 2048, 1024, 8192).

CMS block numbers are 1-based: block N starts at byte ``(N - 1) * blocksize``. The device may
have any sector size: blocks are read through rawdev's :class:`BlockSizeAdapter`. A volume that
fails its open-time checks is never written to.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from construct import ConstructError

from fsproto.errors import FormatError, UnknownFormat
from fsproto.formats.cms.layout import ADT, ADTUSED_OFFSET, BLOCK_SIZES, CMS1, FST_SIZE
from fsproto.rawdev import BlockDevice, BlockSizeAdapter

IMAGE_LABEL_OFFSETS = (4096, 512, 2048, 1024, 8192)
_PROBE_BYTES = 8192 + 80


@dataclass
class Label:
    """The decoded ADT plus where it lives."""

    offset: int  # byte offset of the label on the device
    fields: dict  # ADT fields by IBM name
    raw: bytes  # the 80 bytes as read

    @property
    def block_size(self) -> int:
        return self.fields["ADTDBSIZ"]

    @property
    def dop(self) -> int:
        return self.fields["ADTDOP"]

    @property
    def num_blocks(self) -> int:
        return self.fields["ADTNUM"]


def label_offsets(dev: BlockDevice) -> list[int]:
    """Candidate byte offsets of the label, in the reference's search order, without repeats."""
    out: list[int] = []
    for off in (2 * dev.block_size, dev.block_size, *IMAGE_LABEL_OFFSETS):
        if off not in out and off + 80 <= dev.size:
            out.append(off)
    return out


def _head(dev: BlockDevice) -> bytes:
    count = min(dev.num_blocks, -(-_PROBE_BYTES // dev.block_size))
    return dev.read(0, count)


def find_label(dev: BlockDevice) -> Label:
    """Find and decode the label. Raises UnknownFormat when no ``CMS1`` label is found.

    A label is taken where its own block size says (CKD: 2 x blocksize) or at 512 (FBA); failing
    that, the first ``CMS1`` found is returned so that :func:`validate_label` says what is wrong.
    """
    head = _head(dev)
    found: list[int] = []
    for off in label_offsets(dev):
        raw = head[off : off + 80]
        if len(raw) < 80 or raw[:4] != CMS1:
            continue
        found.append(off)
        dbsiz = struct.unpack_from(">I", raw, 12)[0]
        if off in (2 * dbsiz, 512):
            return _decode(dev, off, raw)
    if found:
        return _decode(dev, found[0], head[found[0] : found[0] + 80])
    raise UnknownFormat("no CMS1 label at any of the offsets the reference searches", device=dev.name)


def _decode(dev: BlockDevice, off: int, raw: bytes) -> Label:
    try:
        fields = dict(ADT.parse(raw))
    except ConstructError as e:  # pragma: no cover - Const checked by the caller
        raise FormatError(f"label does not parse: {e}", device=dev.name, offset=off, struct="ADT") from None
    fields.pop("_io", None)
    return Label(off, fields, raw)


def validate_label(label: Label, dev: BlockDevice) -> None:
    """The checks the reference makes to mount, plus the sizes that must fit the device.

    Raises FormatError naming the label's offset and the field.
    """
    f = label.fields

    def bad(msg: str) -> FormatError:
        return FormatError(msg, device=dev.name, offset=label.offset, struct="ADT")

    bs = f["ADTDBSIZ"]
    if bs not in BLOCK_SIZES:
        raise bad(f"ADTDBSIZ {bs} is not one of {BLOCK_SIZES}")
    if label.offset not in (2 * bs, 512):
        raise bad(f"label at byte {label.offset}, but ADTDBSIZ {bs} puts it at {2 * bs} (or 512 on FBA)")
    if f["ADTDOP"] not in (4, 5):
        raise bad(f"ADTDOP {f['ADTDOP']} is not 4 or 5 (the reference refuses such a disk)")
    if f["ADTFSTSZ"] != FST_SIZE:
        raise bad(f"ADTFSTSZ {f['ADTFSTSZ']} is not 64")
    if f["ADTNFST"] != bs // FST_SIZE:
        raise bad(f"ADTNFST {f['ADTNFST']} is not blocksize/64 = {bs // FST_SIZE}")
    have = dev.size // bs
    if f["ADTNUM"] < f["ADTDOP"] + 1:
        raise bad(f"ADTNUM {f['ADTNUM']} is too small for a directory at block {f['ADTDOP']}")
    if f["ADTNUM"] > have:
        raise bad(f"ADTNUM says {f['ADTNUM']} blocks but the device holds only {have} (truncated image?)")


class Volume:
    """Block-level access to one CMS volume (1-based block numbers, bounds-checked against ADTNUM)."""

    def __init__(self, dev: BlockDevice, label: Label) -> None:
        self.dev = dev
        self.label = label
        self.block_size = label.block_size
        self.num_blocks = label.num_blocks
        self.name = dev.name
        if dev.block_size == self.block_size:
            self._bdev: BlockDevice = dev
        else:
            # Sector size differs from the CMS block size: let rawdev adapt (RMW for bigger sectors).
            self._bdev = BlockSizeAdapter(
                dev, self.block_size, allow_tail=True, owns_inner=False, read_only=dev.read_only
            )
        self._scratch: bytearray | None = bytearray()

    @classmethod
    def open(cls, dev: BlockDevice) -> "Volume":
        """Find and validate the label. Raises UnknownFormat, FormatError."""
        label = find_label(dev)
        validate_label(label, dev)
        return cls(dev, label)

    @property
    def read_only(self) -> bool:
        return self.dev.read_only

    def check_block(self, n: int, *, struct_name: str, block: int | None = None, offset: int | None = None) -> None:
        """Raise FormatError when pointer *n* (found at *block*/*offset*) is outside 1..ADTNUM."""
        if not 1 <= n <= self.num_blocks:
            raise FormatError(
                f"pointer to block {n} is outside 1..{self.num_blocks}",
                device=self.name,
                block=block,
                offset=offset,
                struct=struct_name,
            )

    def read_block(self, n: int) -> bytes:
        """Read CMS block *n*. Raises FormatError out of range, MediaError on I/O errors."""
        return self.read_blocks(n, 1)

    def read_blocks(self, n: int, count: int) -> bytes:
        """Read *count* consecutive blocks starting at block *n*."""
        if n < 1 or n + count - 1 > self.num_blocks:
            raise FormatError(f"read of {count} block(s) outside 1..{self.num_blocks}", device=self.name, block=n)
        return self._bdev.read(n - 1, count)

    def read_blocks_into(self, n: int, buf: bytearray | memoryview) -> None:
        """Read ``len(buf) // block_size`` blocks starting at block *n* into *buf*."""
        count = len(buf) // self.block_size
        if n < 1 or n + count - 1 > self.num_blocks:
            raise FormatError(f"read of {count} block(s) outside 1..{self.num_blocks}", device=self.name, block=n)
        self._bdev.readinto(n - 1, buf)

    def take_scratch(self, size: int) -> bytearray:
        """A buffer of at least *size* bytes for one read, to hand back with :meth:`give_scratch`.

        Reusing it is the point: a fresh megabyte per read is fresh mmap'd pages from glibc,
        faulted in each time (what the daemon's mallopt works around; the offline tools now
        need no such knob). Never resized in place (views into it may outlive the read); a
        concurrent reader finds none and gets a new one.
        """
        buf, self._scratch = self._scratch, None
        if buf is None or len(buf) < size:
            buf = bytearray(size)
        return buf

    def give_scratch(self, buf: bytearray) -> None:
        self._scratch = buf

    def write_blocks(self, n: int, data: bytes | bytearray | memoryview) -> None:
        """Write whole blocks starting at block *n*. Raises FormatError out of range, ReadOnlyError, MediaError."""
        count = len(data) // self.block_size
        if n < 1 or n + count - 1 > self.num_blocks:
            raise FormatError(f"write of {count} block(s) outside 1..{self.num_blocks}", device=self.name, block=n)
        self._bdev.write(n - 1, data)

    def write_label(self, fields: dict) -> None:
        """Rewrite the label in place (read-modify-write of the device sector(s) holding it)."""
        raw = ADT.build(fields)
        self._write_label_bytes(raw)
        self.label.fields = dict(fields)

    def write_used(self, used: int) -> None:
        """Rewrite the label with ADTUSED = *used*: the bytes :meth:`write_label` would write,
        patched into the label as read instead of rebuilt field by field (once per data write)."""
        raw = bytearray(self.label.raw)
        struct.pack_into(">I", raw, ADTUSED_OFFSET, used)
        self._write_label_bytes(bytes(raw))
        self.label.fields = dict(self.label.fields, ADTUSED=used)

    def _write_label_bytes(self, raw: bytes) -> None:
        """Put the 80 label bytes in place: read-modify-write of the device sector(s) holding them."""
        ss = self.dev.block_size
        first = self.label.offset // ss
        last = (self.label.offset + 80 - 1) // ss
        buf = bytearray(self.dev.read(first, last - first + 1))
        pos = self.label.offset - first * ss
        buf[pos : pos + 80] = raw
        self.dev.write(first, buf)
        self.label.raw = raw

    def flush(self) -> None:
        self.dev.flush()


# -- EDF BCD dates -----------------------------------------------------------------------------


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(b: int) -> int:
    hi, lo = b >> 4, b & 0xF
    if hi > 9 or lo > 9:
        raise ValueError(f"byte {b:#04x} is not BCD")
    return hi * 10 + lo


def encode_date(t: float) -> tuple[bytes, bool]:
    """Local time *t* -> (6 BCD bytes, year is 20YY)."""
    lt = time.localtime(t)
    raw = bytes(_bcd(v) for v in (lt.tm_year % 100, lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec))
    return raw, lt.tm_year >= 2000


def decode_date(raw: bytes, century: bool) -> tuple[int, int, int, int, int, int]:
    """6 BCD bytes -> (year, month, day, hour, minute, second). Raises ValueError for bad BCD."""
    yy, mm, dd, hh, mi, ss = (_unbcd(b) for b in raw)
    return (2000 if century else 1900) + yy, mm, dd, hh, mi, ss


_DATE_CACHE: dict[tuple, int] = {}
_DATE_CACHE_MAX = 4096


def date_to_ns(raw: bytes, century: bool) -> int:
    """The FST date as ns since the epoch (the date is local time); 0 when it is not a valid date.

    Memoised (a listing decodes the same few dates thousands of times; mktime is the cost),
    keyed also on the time zone so a changed ``TZ`` (after ``time.tzset()``) is honoured.
    """
    key = (raw, century, time.tzname, time.timezone)
    ns = _DATE_CACHE.get(key)
    if ns is None:
        if len(_DATE_CACHE) >= _DATE_CACHE_MAX:
            _DATE_CACHE.clear()
        ns = _DATE_CACHE[key] = _date_to_ns(raw, century)
    return ns


def _date_to_ns(raw: bytes, century: bool) -> int:
    try:
        y, mo, d, h, mi, s = decode_date(raw, century)
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 62):
            return 0
        return int(time.mktime((y, mo, d, h, mi, s, 0, 0, -1))) * 1_000_000_000
    except (ValueError, OverflowError):
        return 0
