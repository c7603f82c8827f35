"""The :class:`fsproto.vfs.Filesystem` view of a CMS EDF minidisk.

References: shared/specs/cms-edf.md "What the reference shows and accepts"; issue 9's defaults.
Paths are ``/NAME.TYPE`` (one flat directory); lookups upper-case. ``text=False`` (default)
serves the binary view (F: records x LRECL bytes; V: record bytes without length fields);
``text=True`` decodes each record with the code page (cp1047 default, cp037) plus ``\\n``.

Limits: the text view materialises a file's text (cached up to 16 MiB per file) and rewrites
all its records on a write; binary writes change only the blocks they touch. Extended
attributes ``user.record_format``, ``user.record_lrecl``, ``user.file_mode`` can be set only
while a file has no records. After a crash that left a notice-level directory state (see
namespace.py) the disk mounts read-only until ``fsck --repair``.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Callable

from fsproto.errors import (
    ExchangeNotSupported,
    FileTooBig,
    FormatError,
    FsError,
    FsReadOnly,
    InvalidName,
    InvalidOperation,
    IsADirectory,
    NoSuchAttribute,
    NotADirectory,
    NoSpace,
    NotFound,
)
from fsproto.formats.cms import files, orphans
from fsproto.formats.cms.alloc import AllocMap
from fsproto.formats.cms.codepage import check_codepage
from fsproto.formats.cms.directory import Directory, Fst, parse_mode, parse_name
from fsproto.formats.cms.layout import FST_SIZE, RECFM_F, RECFM_V
from fsproto.formats.cms.namespace import Namespace
from fsproto.formats.cms.pointers import read_tree
from fsproto.formats.cms.records import FileMap, index_v_records, iter_records, read_binary, records_to_text, \
    text_to_records
from fsproto.formats.cms.volume import Volume, date_to_ns, encode_date, find_label
from fsproto.rawdev import BlockDevice
from fsproto.vfs import FileStat, Filesystem, FsStats, split_path

XATTRS = ("user.record_format", "user.record_lrecl", "user.file_mode")
_TEXT_CACHE_MAX = 16 << 20
# Block numbers (FOP, pointers, the FST's data-block count) are 4 bytes: no file has more blocks.
MAX_FILE_BLOCKS = 0xFFFFFFFF

Key = tuple[bytes, bytes]


def _mutation(fn):
    """Writers: after a device or format error mid-operation, the in-memory directory and map may
    be ahead of the disk; re-read both so nothing is allocated twice (FsErrors such as NoSpace are
    raised before any write and rolled back where they arise).
    """

    @functools.wraps(fn)
    def wrapper(self: "CmsFilesystem", *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except FsError:
            raise
        except BaseException:
            self._reload()
            raise

    return wrapper


class CmsFilesystem(Filesystem):
    """One open CMS volume. Raises only fsproto.errors types (see each method)."""

    supports_orphans = True  # see orphans.py

    def __init__(self, dev: BlockDevice, *, text: bool = False, codepage: str = "cp1047",
                 clock: Callable[[], float] = time.time) -> None:
        """Open and check the volume. Raises UnknownFormat, FormatError, UsageError (code page)."""
        self.codepage = check_codepage(codepage)
        self.text = bool(text)
        self.clock = clock
        self.vol = Volume.open(dev)
        self.dir = Directory(self.vol)
        am = self.dir.allocmap
        self.amap = AllocMap.load(self.vol, am.fop, am.levels, am.records)
        self.ns = Namespace(self)
        self._maps: dict[Key, FileMap] = {}
        self._texts: dict[Key, bytes] = {}
        self.orphans = orphans.Orphans()
        self._date_second: int | None = None
        self._date: tuple[bytes, bool] = (bytes(6), False)
        self.read_only = dev.read_only
        # The binary view reads back what was written, except F files (whole records; their
        # FileStat says exact_size=False). The text view re-encodes records: not byte-exact.
        self.exact_sizes = not self.text

    # -- helpers -----------------------------------------------------------------------------------
    def _reload(self) -> None:
        """Re-read the directory and the map from the device; read-only if even that fails."""
        self._maps.clear()
        self._texts.clear()
        try:
            self.dir = Directory(self.vol)
            am = self.dir.allocmap
            self.amap = AllocMap.load(self.vol, am.fop, am.levels, am.records)
            self.ns = Namespace(self)
            self.vol.label = find_label(self.vol.dev)
        except Exception:  # noqa: BLE001 - the device is failing: stop writing to it
            self.read_only = True

    def now_date(self) -> tuple[bytes, bool]:
        # FST dates have whole seconds: encode once per second, not twice per write.
        second = math.floor(self.clock())
        if second != self._date_second:
            self._date_second, self._date = second, encode_date(second)
        return self._date

    def write_used(self) -> None:
        if self.vol.label.fields["ADTUSED"] != self.amap.used:
            self.vol.write_used(self.amap.used)

    def commit_fst(self, slot: int, changes: dict, *, touch: bool) -> None:
        self.ns.commit_fst(slot, changes, touch=touch)

    def commit_file(self, key: Key, changes: dict, *, touch: bool) -> None:
        """The commit of a change to file *key*: its FST in the directory, or an orphan's in memory."""
        fst = self.orphans.fsts.get(key)
        if fst is None:
            self.ns.commit_fst(self.dir.index[key], changes, touch=touch)
            return
        for k, v in changes.items():
            setattr(fst, k, v)
        if touch:
            fst.date, century = self.now_date()
            fst.flag = (fst.flag | 0x08) if century else (fst.flag & ~0x08)

    def forget(self, key: Key) -> None:
        self._maps.pop(key, None)
        self._texts.pop(key, None)

    def move_cache(self, old: Key, new: Key) -> None:
        """The file cached as *old* is now called *new* (rename, orphan)."""
        fm = self._maps.pop(old, None)
        text = self._texts.pop(old, None)
        self.forget(new)
        if fm is not None:
            self._maps[new] = fm
        if text is not None:
            self._texts[new] = text

    def _key(self, path: str) -> Key:
        return _path_key(path)

    def _fst(self, key: Key, slot: int) -> Fst:
        return self.orphans.fsts[key] if slot < 0 else self.dir.slots[slot]

    def _slot(self, path: str) -> tuple[Key, int]:
        """(key, directory slot) of *path*; slot -1 for an orphan's private path. Raises NotFound."""
        okey = self.orphans.key_of(path)
        if okey is not None:
            return okey, -1
        key = self._key(path)
        slot = self.dir.lookup(key)
        if slot is None:
            raise NotFound(f"{path}: no such file", device=self.vol.name)
        return key, slot

    def _check_fits(self, end: int) -> None:
        """A file can never outgrow the disk: refuse before materialising anything that big.

        Past what the format can address at all (32-bit block numbers: MAX_FILE_BLOCKS blocks)
        is FileTooBig (EFBIG, as truncate(2) and write(2) say); past this disk, NoSpace.
        """
        view = 2 if self.text else 1  # a text line may be up to twice its record (newline, UTF-8)
        if end > MAX_FILE_BLOCKS * self.vol.block_size * view:
            raise FileTooBig(f"{end} bytes is more than a CMS file can hold ({MAX_FILE_BLOCKS} blocks "
                             f"of {self.vol.block_size})", device=self.vol.name)
        limit = self.vol.num_blocks * self.vol.block_size * view
        if end > limit:
            raise NoSpace(f"{end} bytes cannot fit a disk of {limit} bytes", device=self.vol.name)

    def _check_writable(self) -> None:
        if self.read_only:
            raise FsReadOnly("filesystem is read-only")
        if self.dir.anomalies:
            raise FsReadOnly(f"directory needs repair ({self.dir.anomalies[0]}); run fsck --repair")

    def filemap(self, key: Key) -> FileMap:
        """The cached block map (and V record index) of a file. Raises FormatError."""
        fm = self._maps.get(key)
        if fm is not None:
            return fm
        fst = self.orphans.fsts.get(key) or self.dir.slots[self.dir.index[key]]
        fm = load_filemap(self.vol, fst)
        self._maps[key] = fm
        return fm

    def _text(self, key: Key) -> bytes:
        t = self._texts.get(key)
        if t is None:
            t = records_to_text(iter_records(self.vol, self.filemap(key)), self.codepage)
            if len(t) <= _TEXT_CACHE_MAX:
                self._texts[key] = t
        return t

    def _size(self, key: Key) -> int:
        return len(self._text(key)) if self.text else self.filemap(key).binary_size

    def _stat_fst(self, key: Key, fst: Fst) -> FileStat:
        fm = self.filemap(key)
        pointer_blocks = fm.tree.pointer_block_count()
        return FileStat(
            name=fst.display_name(),
            is_dir=False,
            size=self._size(key),
            mtime_ns=date_to_ns(fst.date, fst.century),
            alloc_bytes=(fst.data_blocks + pointer_blocks) * self.vol.block_size,
            mode=0o444 if self.read_only else 0o666,  # no execute bit in CMS; the mount's fmask applies
            exact_size=fst.recfm != RECFM_F,
            extra={"recfm": fst.recfm_char, "lrecl": str(fst.lrecl), "mode": fst.mode_str(),
                   "records": str(fst.records), "levels": str(fst.levels)},
        )

    # -- lookups -------------------------------------------------------------------------------------
    def stat(self, path: str) -> FileStat:
        """Raises NotFound, InvalidName, NameTooLong, FormatError."""
        parent, name = split_path(path)
        if parent == "/" and not name:
            d = self.dir.director
            return FileStat(name="/", is_dir=True, size=self.dir.count * 64, mtime_ns=date_to_ns(d.date, d.century),
                            mode=0o555 if self.read_only else 0o777, nlink=2)
        key, slot = self._slot(path)
        return self._stat_fst(key, self._fst(key, slot))

    def listdir(self, path: str = "/") -> list[FileStat]:
        """Every file; a damaged one is listed with size 0 and ``extra["error"]``. Raises NotFound, NotADirectory."""
        parent, name = split_path(path)
        if name:
            self._slot(path)
            raise NotADirectory(f"{path} is a file")
        out = []
        for _, f in self.dir.files():
            try:
                out.append(self._stat_fst(f.key, f))
            except FormatError as e:
                # One damaged file must not hide the others: list it empty; stat/read raise.
                out.append(FileStat(name=f.display_name(), is_dir=False, size=0,
                                    mtime_ns=date_to_ns(f.date, f.century), mode=0o000, extra={"error": str(e)}))
        return out

    # -- data ----------------------------------------------------------------------------------------
    def read(self, path: str, offset: int, size: int) -> bytes:
        """Raises NotFound, IsADirectory, InvalidName, FormatError."""
        key, _ = self._slot(path)
        if offset < 0 or size < 0:
            raise InvalidOperation("negative offset or size")
        if self.text:
            return self._text(key)[offset : offset + size]
        return read_binary(self.vol, self.filemap(key), offset, size)

    @_mutation
    def write(self, path: str, offset: int, data: bytes) -> int:
        """Raises FsReadOnly, NotFound, NoSpace, FileTooBig, InvalidOperation, FormatError."""
        self._check_writable()
        key, _ = self._slot(path)
        if offset < 0:
            raise InvalidOperation("negative offset")
        data = bytes(data)
        if not data:
            return 0
        self._check_fits(offset + len(data))
        fm = self.filemap(key)
        if self.text:
            cur = self._text(key)
            new = cur[:offset].ljust(offset, b"\0") + data + cur[offset + len(data) :]
            self._rewrite_text(key, fm, new)
        else:
            files.write_binary(self, key, fm, offset, data)
            self._texts.pop(key, None)
        return len(data)

    def _rewrite_text(self, key: Key, fm: FileMap, text: bytes) -> None:
        """Store *text* as records; *text* stays the file's text image while the filesystem is open.

        Keeping the image (not the records re-rendered) gives POSIX behaviour to a writer that
        sends a line in several write() calls: a partial last line is stored as a record (as the
        reference does) but the next write continues it, F padding is not read back mid-write,
        and an incomplete UTF-8 sequence at the end waits for its remaining bytes.
        """
        if fm.recfm == "F" and fm.lrecl == 0:
            raise InvalidOperation("F file with LRECL 0: set user.record_lrecl first")
        complete = text
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason != "unexpected end of data" or e.end != len(text):
                raise InvalidOperation(f"text is not UTF-8 at byte {e.start}") from None
            complete = text[: e.start]
        recs = text_to_records(complete, self.codepage, fm.recfm, fm.lrecl)
        files.rewrite_records(self, key, fm, recs)
        self._texts[key] = text

    @_mutation
    def truncate(self, path: str, size: int) -> None:
        """Raises FsReadOnly, NotFound, NoSpace, FileTooBig, InvalidOperation."""
        self._check_writable()
        key, _ = self._slot(path)
        if size < 0:
            raise InvalidOperation("negative size")
        self._check_fits(size)
        fm = self.filemap(key)
        if self.text:
            cur = self._text(key)
            if size != len(cur):
                self._rewrite_text(key, fm, cur[:size].ljust(size, b"\0"))
            return
        files.truncate_binary(self, key, fm, size)
        self._texts.pop(key, None)

    # -- namespace -----------------------------------------------------------------------------------
    @_mutation
    def create(self, path: str) -> FileStat:
        """A new empty V file, mode A1, LRECL 0. Raises FsReadOnly, AlreadyExists, InvalidName, NameTooLong, NoSpace."""
        from fsproto.errors import AlreadyExists

        self._check_writable()
        key = self._key(path)
        if self.dir.lookup(key) is not None:
            raise AlreadyExists(f"{path} exists")
        date, century = self.now_date()
        fst = Fst(key[0], key[1], bytes(8), parse_mode("A1"), bytes(4), RECFM_V, 0x08 if century else 0, 0,
                  bytes(4), 0, 0, 0, 0, 12, date, bytes(4))
        self.ns.create(fst)
        return self.stat(path)

    def _all_blocks(self, key: Key) -> list[int]:
        fm = self.filemap(key)
        return [b for b in fm.tree.leaves if b] + fm.tree.pointer_blocks()

    @_mutation
    def unlink(self, path: str) -> None:
        """Raises FsReadOnly, NotFound, IsADirectory, InvalidName."""
        self._check_writable()
        key, slot = self._slot(path)
        if slot < 0:
            orphans.release(self, key)
            return
        blocks = self._all_blocks(key)
        self.ns.delete(slot, blocks)
        self.forget(key)

    @_mutation
    def orphan(self, path: str) -> str:
        """Delete *path* from the directory but keep its blocks (see orphans.py); returns the
        private path. Raises FsReadOnly, NotFound, IsADirectory, InvalidName."""
        self._check_writable()
        key, slot = self._slot(path)
        if slot < 0:
            raise NotFound(f"{path}: no such file", device=self.vol.name)
        return orphans.detach(self, key, slot)

    @_mutation
    def rename_orphaning(self, old: str, new: str) -> str | None:
        """rename(), but a replaced file becomes an orphan. Raises what rename raises."""
        self._check_writable()
        key, slot = self._slot(old)
        new_key = self._key(new)
        target = self.dir.lookup(new_key)
        if target is None or new_key == key or slot < 0:
            self.rename(old, new)
            return None
        private = orphans.detach(self, new_key, target, rename_to=new_key, source_slot=slot)
        self.move_cache(key, new_key)
        return private

    @_mutation
    def exchange(self, a: str, b: str) -> None:
        """Swap the names of two files whose FSTs share a directory block: one block write, so
        a cut leaves either both old names or both new. Raises ExchangeNotSupported (different
        blocks), FsReadOnly, NotFound."""
        self._check_writable()
        ka, sa = self._slot(a)
        kb, sb = self._slot(b)
        if sa < 0 or sb < 0:
            raise NotFound("an orphan has no name to exchange", device=self.vol.name)
        if ka == kb:
            return
        per_block = self.vol.block_size // FST_SIZE
        if sa // per_block != sb // per_block:
            raise ExchangeNotSupported(f"{a} and {b} are in different directory blocks; CMS can swap "
                                       "two names atomically only within one", device=self.vol.name)
        self.ns.exchange(sa, sb)
        fa, ta = self._maps.pop(ka, None), self._texts.pop(ka, None)
        self.move_cache(kb, ka)
        self.forget(kb)
        if fa is not None:
            self._maps[kb] = fa
        if ta is not None:
            self._texts[kb] = ta

    @_mutation
    def rename(self, old: str, new: str) -> None:
        """Replaces *new* if it exists. Raises FsReadOnly, NotFound, InvalidName, NameTooLong."""
        self._check_writable()
        key, slot = self._slot(old)
        new_key = self._key(new)
        if new_key == key or slot < 0:
            return
        target = self.dir.lookup(new_key)
        target_blocks = self._all_blocks(new_key) if target is not None else None
        self.ns.rename(slot, new_key, target_blocks)
        self.move_cache(key, new_key)

    @_mutation
    def set_mtime(self, path: str, mtime_ns: int) -> None:
        """Set the FST date (local time; 1900-2099). Raises FsReadOnly, NotFound, InvalidOperation."""
        self._check_writable()
        key, slot = self._slot(path)
        t = mtime_ns / 1e9
        try:
            year = time.localtime(t).tm_year
        except (OverflowError, OSError, ValueError):
            raise InvalidOperation(f"time {mtime_ns} ns cannot be stored in an FST date") from None
        if not 1900 <= year <= 2099:
            raise InvalidOperation(f"year {year} cannot be stored in an FST date")
        date, century = encode_date(t)
        flag = self._fst(key, slot).flag
        self.commit_file(key, {"date": date, "flag": (flag | 0x08) if century else (flag & ~0x08)}, touch=False)

    # -- extended attributes ---------------------------------------------------------------------------
    def listxattr(self, path: str) -> list[str]:
        self._slot(path)
        return list(XATTRS)

    def getxattr(self, path: str, name: str) -> bytes:
        """Raises NoSuchAttribute, NotFound."""
        key, slot = self._slot(path)
        fst = self._fst(key, slot)
        if name == "user.record_format":
            return fst.recfm_char.encode()
        if name == "user.record_lrecl":
            return str(fst.lrecl).encode()
        if name == "user.file_mode":
            return fst.mode_str().encode()
        raise NoSuchAttribute(f"no attribute {name}")

    @_mutation
    def setxattr(self, path: str, name: str, value: bytes) -> None:
        """Raises NoSuchAttribute, InvalidOperation (file has records, bad value), FsReadOnly."""
        self._check_writable()
        key, slot = self._slot(path)
        fst = self._fst(key, slot)
        if name not in XATTRS:
            raise NoSuchAttribute(f"no attribute {name}")
        if fst.records:
            raise InvalidOperation(f"{name} can change only while the file has no records")
        val = bytes(value).decode("ascii", "replace").strip().rstrip("\0")
        if name == "user.record_format":
            if val.upper() not in ("F", "V"):
                raise InvalidOperation(f"record format {val!r} is not F or V")
            f = val.upper() == "F"
            changes = {"recfm": RECFM_F if f else RECFM_V, "ptr_size": 4 if f else 12}
        elif name == "user.record_lrecl":
            if not val.isdigit() or not 0 <= int(val) <= 65535 * (1 if fst.recfm == RECFM_V else 1000):
                raise InvalidOperation(f"LRECL {val!r} is not a valid record length")
            changes = {"lrecl": int(val)}
        else:
            try:
                changes = {"fmode": parse_mode(val)}
            except InvalidName as e:
                raise InvalidOperation(str(e)) from None
        self.commit_file(key, changes, touch=False)
        self.forget(key)

    # -- whole filesystem --------------------------------------------------------------------------------
    def statfs(self) -> FsStats:
        per_block = self.vol.block_size // 64
        free_blocks = self.amap.free
        used_files = self.dir.count - 2
        return FsStats(
            block_size=self.vol.block_size,
            total_blocks=self.vol.num_blocks,
            free_blocks=free_blocks,
            total_files=used_files + free_blocks * per_block,
            free_files=free_blocks * per_block,
            name_max=17,
            label=self.vol.label.fields["ADTID"].decode("cp1047", "replace").strip(),
        )

    def flush(self) -> None:
        if not self.read_only and not self.vol.dev.closed:
            self.vol.flush()


@functools.lru_cache(maxsize=4096)
def _path_key(path: str) -> Key:
    """``/NAME.TYPE`` -> (fname, ftype), memoised: a mount parses the same path on every request
    (a 4 KiB write is two). Raises NotFound, IsADirectory, InvalidName, NameTooLong (not cached)."""
    parent, name = split_path(path)
    if parent != "/":
        raise NotFound(f"{path}: CMS has one flat directory")
    if not name:
        raise IsADirectory(f"{path} is the root directory")
    return parse_name(name)


def load_filemap(vol: Volume, fst: Fst) -> FileMap:
    """Walk a file's tree (and index V records). Raises FormatError naming blocks."""
    what = fst.display_name()
    bs = vol.block_size
    if fst.recfm == RECFM_F:
        if fst.ptr_size != 4 and fst.records:
            raise FormatError(f"{what}: F file with pointer size {fst.ptr_size}", device=vol.name, struct="FST")
        length = fst.records * fst.lrecl
        if length > vol.num_blocks * bs:
            raise FormatError(f"{what}: {fst.records} records of {fst.lrecl} bytes do not fit the disk",
                              device=vol.name, struct="FST")
        tree = read_tree(vol, fst.fop, fst.levels, -(-length // bs), 4, what=what)
        return FileMap("F", fst.lrecl, fst.records, tree, length)
    if fst.recfm != RECFM_V:
        raise FormatError(f"{what}: record format byte {fst.recfm.hex()} is neither F nor V", device=vol.name,
                          struct="FST")
    if fst.ptr_size != 12 and fst.records:
        raise FormatError(f"{what}: V file with pointer size {fst.ptr_size}", device=vol.name, struct="FST")
    if fst.records > fst.data_blocks * bs // 3 + 1:
        raise FormatError(f"{what}: {fst.records} records cannot fit {fst.data_blocks} blocks", device=vol.name,
                          struct="FST")
    tree = read_tree(vol, fst.fop, fst.levels, fst.data_blocks if fst.records else 0, 12, what=what,
                     nrecords=fst.records)
    fm = index_v_records(vol, tree, fst.records, what=what)
    fm.lrecl = fst.lrecl
    return fm
