"""Writing file data copy-on-write: patches to a file's record stream, committed by one FST write.

Reference: shared/specs/cms-edf.md "Records", "Pointer blocks". Crash rule (also alloc.py): new
data and pointer blocks go only to free blocks; their bits are set and the map written before
the directory block holding the FST is written (the commit point); replaced blocks are freed
after it; ADTUSED is written last. A cut therefore leaves the old or the new file plus, at
worst, leaked blocks and a stale ADTUSED, which fsck reports as notices.

Speed without changing any of that (tools/bench_cms.py): the file's cached map is updated in
place, so an append costs O(bytes written); only partly overwritten blocks are read; new data
and pointer blocks are queued and written together, adjacent ones in one device write, before
the map; pointer blocks, map and directory are never re-read (the open filesystem is their only
writer), and ADTUSED is patched into the label's sector rather than the label rebuilt.

Binary view semantics (beyond the reference, which only appends): V overwrites keep record
boundaries; bytes past EOF become new records (one per call, split at 65535, a gap becomes zero
bytes); truncate cuts records anywhere; truncate up appends zero records. F files grow in whole
records (a partial last record is zero-padded).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING

from fsproto.errors import FileTooBig, InvalidOperation, NoSpace
from fsproto.formats.cms.layout import MAX_V_RECORD
from fsproto.formats.cms.pointers import Tree, update_tree, v_leaf_metas
from fsproto.formats.cms.records import FileMap, read_stream

if TYPE_CHECKING:
    from fsproto.formats.cms.fs import CmsFilesystem

MAX_RECORDS = 0xFFFFFFFF


_COALESCE_MAX = 64 << 10  # adjacent new blocks are joined into one device write up to this size
_PENDING_MAX = 8 << 20  # queued new-block bytes before they are written early (bounded memory)


class Txn:
    """Allocations and frees of one operation, applied in crash-safe order.

    Writes to the blocks it allocates are queued and issued at :meth:`prepare`, physically
    adjacent ones joined (a 4 KiB append's data and pointer blocks are usually contiguous):
    these blocks are unreachable until the commit, so their order among themselves does not
    matter; they all precede the map write and the commit as before.
    """

    def __init__(self, fs: "CmsFilesystem") -> None:
        self.fs = fs
        self.allocated: list[int] = []
        self.freed: list[int] = []
        self._pending: list[tuple[int, bytes | bytearray | memoryview]] = []
        self._pending_bytes = 0

    def alloc(self) -> int:
        b = self.fs.amap.allocate()
        self.allocated.append(b)
        return b

    def alloc_many(self, count: int) -> list[int]:
        """The blocks *count* calls of :meth:`alloc` would return."""
        out = self.fs.amap.allocate_many(count)
        self.allocated.extend(out)
        return out

    def write(self, block: int, data: bytes | bytearray | memoryview) -> None:
        """Queue *data* for new block(s) from :meth:`alloc`; the caller must not change it afterwards."""
        self._pending.append((block, data))
        self._pending_bytes += len(data)
        if self._pending_bytes > _PENDING_MAX:
            self.write_pending()

    def write_pending(self) -> None:
        """Issue the queued writes in block order, joining small adjacent ones. Raises MediaError."""
        vol = self.fs.vol
        bs = vol.block_size
        pending = sorted(self._pending, key=lambda item: item[0])
        self._pending.clear()
        self._pending_bytes = 0
        i = 0
        while i < len(pending):
            start, data = pending[i]
            end, size, j = start + len(data) // bs, len(data), i + 1
            while j < len(pending) and pending[j][0] == end and size + len(pending[j][1]) <= _COALESCE_MAX:
                end += len(pending[j][1]) // bs
                size += len(pending[j][1])
                j += 1
            vol.write_blocks(start, data if j == i + 1 else b"".join(d for _, d in pending[i:j]))
            i = j

    def rollback(self) -> None:
        for b in self.allocated:
            self.fs.amap.clear(b)
        self.allocated.clear()

    def prepare(self) -> None:
        """Write the new blocks, then make their bits durable, before the commit write."""
        self.write_pending()
        self.fs.amap.write_dirty()

    def finish(self) -> None:
        """After the commit: free replaced blocks, then ADTUSED."""
        for b in self.freed:
            self.fs.amap.clear(b)
        self.fs.amap.write_dirty()
        self.fs.write_used()


def commit_stream(fs: "CmsFilesystem", key: tuple[bytes, bytes], fm: FileMap, patches: list[tuple[int, bytes]],
                  new_len: int, *, nrec: int, lrecl: int, v_index: tuple[array, array, array] | None = None,
                  v_append: tuple[array, array, array] | None = None, struct_from: int | None = None) -> None:
    """Apply *patches* (stream offset, bytes) and resize the stream to *new_len*, copy-on-write.

    V files give either *v_index* (the whole new record index) or *v_append* (index entries
    of records added at the end; rec_bin without its leading 0).

    Only the device is copy-on-write: the cached map (*fm*'s leaves, hi/disp, record index) is
    updated in place so that an append costs O(bytes written), not O(file size). Any failure
    drops the cached map (``fs.forget``), so the next access re-reads it from the disk.

    Raises NoSpace (nothing changed), FileTooBig, MediaError.
    """
    try:
        _commit_stream(fs, key, fm, patches, new_len, nrec=nrec, lrecl=lrecl, v_index=v_index, v_append=v_append,
                       struct_from=struct_from)
    except BaseException:
        fs.forget(key)
        raise


def _commit_stream(fs: "CmsFilesystem", key: tuple[bytes, bytes], fm: FileMap, patches: list[tuple[int, bytes]],
                   new_len: int, *, nrec: int, lrecl: int, v_index: tuple[array, array, array] | None,
                   v_append: tuple[array, array, array] | None, struct_from: int | None) -> None:
    vol = fs.vol
    bs = vol.block_size
    old = fm.tree
    old_n, new_n = len(old.leaves), -(-new_len // bs)
    if nrec > MAX_RECORDS:
        raise FileTooBig(f"{nrec} records is more than an FST can count")
    patches = [(o, d) for o, d in patches if len(d)]
    if new_len < fm.stream_len and new_len % bs and new_len // bs < old_n:
        patches.append((new_len, bytes(bs - new_len % bs)))  # the tail of the last block stays zero
    # Blocks to rewrite, as sorted disjoint runs: the new tail and every block a patch touches.
    spans = [(old_n, new_n - 1)] if new_n > old_n else []
    edges: set[int] = set()  # first/last block of each patch: the only ones it may cover partly
    for o, d in patches:
        first, last = o // bs, min((o + len(d) - 1) // bs, new_n - 1)
        if first <= last:
            spans.append((first, last))
            edges.update((first, last))
    runs = _merge(spans)
    n_changed = sum(j1 - j0 + 1 for j0, j1 in runs)
    # A kept block is read (to keep its other bytes) unless one patch covers it whole.
    full = [(-(-o // bs), (o + len(d)) // bs - 1) for o, d in patches]
    # Data blocks are checked up front; pointer blocks, fewer and harder to count exactly, make
    # allocate() raise NoSpace, which rolls back (nothing durable has changed before prepare()).
    if n_changed > fs.amap.free:
        raise NoSpace(f"needs {n_changed} free blocks, {fs.amap.free} left", device=vol.name)
    txn = Txn(fs)
    try:
        v = old.ptr_size == 12
        nonnull = None if v else old.data_block_count()
        leaves = old.leaves  # updated in place (see the docstring)
        removed = leaves[new_n:]
        txn.freed.extend(b for b in removed if b)
        if nonnull is not None:
            nonnull -= len(removed) - removed.count(0)
        del leaves[new_n:]
        if new_n > len(leaves):
            leaves.frombytes(bytes(4 * (new_n - len(leaves))))
        dirty: set[int] = set()  # update_tree needs only each changed leaf's pointer block
        for j0, j1 in runs:
            buf = bytearray((j1 - j0 + 1) * bs)
            for j in sorted(e for e in edges if j0 <= e <= j1):
                if j < old_n and leaves[j] and not any(c0 <= j <= c1 for c0, c1 in full):
                    buf[(j - j0) * bs : (j - j0 + 1) * bs] = vol.read_block(leaves[j])
            lo, hi = j0 * bs, (j1 + 1) * bs
            for o, d in patches:
                a, b = max(o, lo), min(o + len(d), hi)
                if a < b:
                    buf[a - lo : b - lo] = d[a - o : b - o]
            phys = txn.alloc_many(j1 - j0 + 1)
            kept = leaves[j0 : min(j1 + 1, old_n)]
            txn.freed.extend([b for b in kept if b])
            if nonnull is not None:
                nonnull += kept.count(0) + (j1 + 1 - max(j0, old_n) if j1 >= old_n else 0)
            leaves[j0 : j1 + 1] = array("I", phys)
            dirty.update(range(j0, j1 + 1, old.ppb))
            dirty.add(j1)
            # One device write per physically contiguous stretch (allocate_many ascends, so
            # first and last tell whether the whole run is one).
            if phys[-1] - phys[0] == len(phys) - 1:
                txn.write(phys[0], buf)
                continue
            k = 0
            while k < len(phys):
                m = k + 1
                while m < len(phys) and phys[m] == phys[k] + (m - k):
                    m += 1
                txn.write(phys[k], memoryview(buf)[k * bs : m * bs])
                k = m
        new = Tree(old.ptr_size, old.ppb, leaves, nonnull=nonnull)
        if v:
            if v_append is not None:
                for have, more in zip((fm.rec_pos, fm.rec_len, fm.rec_bin), v_append):
                    have.extend(more)
            rec_pos = v_index[0] if v_index else fm.rec_pos
            new.hi, new.disp = old.hi, old.disp
            for arr in (new.hi, new.disp):
                del arr[new_n:]
                if new_n > len(arr):
                    arr.frombytes(bytes(4 * (new_n - len(arr))))
            start = min(struct_from // bs if struct_from is not None else new_n, old_n)
            for j, h, dsp in v_leaf_metas(rec_pos, nrec, start, new_n, bs, new_len):
                if j >= old_n or h != new.hi[j] or dsp != new.disp[j]:
                    new.hi[j], new.disp[j] = h, dsp
                    dirty.add(j)
        update_tree(old, new, dirty, bs, txn.alloc, txn.write, txn.freed, n_old=old_n)
        upd = dict(fop=new.fop, data_blocks=new.data_block_count(), records=nrec, lrecl=lrecl, levels=new.levels)
        txn.prepare()
        fs.commit_file(key, upd, touch=True)  # the FST write (an orphan's lives in memory)
    except BaseException:
        txn.rollback()
        raise
    txn.finish()
    fm.tree, fm.nrec, fm.lrecl, fm.stream_len = new, nrec, lrecl, new_len
    if v_index is not None:
        fm.rec_pos, fm.rec_len, fm.rec_bin = v_index


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive block ranges -> sorted disjoint runs, touching ones joined (as one set of blocks)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# -- binary view operations --------------------------------------------------------------------


def _check_growth(fs: "CmsFilesystem", fm: FileMap, new_len: int) -> None:
    bs = fs.vol.block_size
    grow = -(-new_len // bs) - len(fm.tree.leaves)
    if grow > fs.amap.free:
        raise NoSpace(f"needs {grow} more blocks, {fs.amap.free} free", device=fs.vol.name)


def _v_records(data: bytes) -> list[bytes]:
    return [data[i : i + MAX_V_RECORD] for i in range(0, len(data), MAX_V_RECORD)]


def _v_append(fm: FileMap, recs: list[bytes]) -> tuple[bytes, tuple[array, array, array], int, int]:
    """Headers+bytes for new records at the stream end, and their record index entries
    (rec_pos, rec_len, rec_bin without the leading 0): O(new records), not O(file)."""
    rec_pos, rec_len, rec_bin = array("Q"), array("I"), array("Q")
    pos = fm.stream_len
    binoff = fm.rec_bin[fm.nrec]
    parts = []
    lrecl = fm.lrecl
    for r in recs:
        parts.append(len(r).to_bytes(2, "big"))
        parts.append(r)
        rec_pos.append(pos)
        rec_len.append(len(r))
        binoff += len(r)
        rec_bin.append(binoff)
        pos += 2 + len(r)
        lrecl = max(lrecl, len(r))
    return b"".join(parts), (rec_pos, rec_len, rec_bin), pos, lrecl


def write_binary(fs: "CmsFilesystem", key: tuple[bytes, bytes], fm: FileMap, offset: int, data: bytes) -> None:
    """Write *data* at *offset* of the binary view. Raises NoSpace, InvalidOperation, FileTooBig."""
    if not data:
        return
    size = fm.binary_size
    end = offset + len(data)
    if fm.recfm == "F":
        if fm.lrecl == 0:
            raise InvalidOperation("F file with LRECL 0: set user.record_lrecl first")
        nrec = max(fm.nrec, -(-end // fm.lrecl))
        new_len = nrec * fm.lrecl
        _check_growth(fs, fm, new_len)
        commit_stream(fs, key, fm, [(offset, data)], new_len, nrec=nrec, lrecl=fm.lrecl)
        return
    patches: list[tuple[int, bytes]] = []
    if offset < size:
        stop = min(end, size)
        i = bisect_right(fm.rec_bin, offset) - 1
        p = offset
        while p < stop:
            r_end = fm.rec_bin[i + 1]
            c_end = min(stop, r_end)
            so = fm.rec_pos[i] + 2 + (p - fm.rec_bin[i])
            patches.append((so, data[p - offset : c_end - offset]))
            p = c_end
            i += 1
    if end <= size:
        commit_stream(fs, key, fm, patches, fm.stream_len, nrec=fm.nrec, lrecl=fm.lrecl)
        return
    gap = max(0, offset - size)
    tail_len = gap + end - max(offset, size)
    _check_growth(fs, fm, fm.stream_len + tail_len + 2 * (-(-tail_len // MAX_V_RECORD)))
    tail = bytes(gap) + data[max(0, size - offset) :]
    recs = _v_records(tail)
    blob, more, new_len, lrecl = _v_append(fm, recs)
    patches.append((fm.stream_len, blob))
    commit_stream(fs, key, fm, patches, new_len, nrec=fm.nrec + len(recs), lrecl=lrecl, v_append=more,
                  struct_from=fm.stream_len)


def truncate_binary(fs: "CmsFilesystem", key: tuple[bytes, bytes], fm: FileMap, size: int) -> None:
    """Cut or extend the binary view to *size*. Raises NoSpace, InvalidOperation."""
    cur = fm.binary_size
    if size == cur:
        return
    if fm.recfm == "F":
        if fm.lrecl == 0:
            raise InvalidOperation("F file with LRECL 0: set user.record_lrecl first")
        nrec = -(-size // fm.lrecl)
        new_len = nrec * fm.lrecl
        patches = [(size, bytes(new_len - size))] if size < cur and new_len > size else []
        _check_growth(fs, fm, new_len)
        commit_stream(fs, key, fm, patches, new_len, nrec=nrec, lrecl=fm.lrecl)
        return
    if size > cur:
        write_binary(fs, key, fm, cur, bytes(size - cur))
        return
    i = bisect_right(fm.rec_bin, size) - 1  # record holding byte *size* (or starting there)
    keep = size - fm.rec_bin[i]
    rec_pos, rec_len, rec_bin = fm.rec_pos[:i], fm.rec_len[:i], fm.rec_bin[: i + 1]
    patches: list[tuple[int, bytes]] = []
    if keep:
        pos = fm.rec_pos[i]
        rec_pos.append(pos)
        rec_len.append(keep)
        rec_bin.append(size)
        patches.append((pos, keep.to_bytes(2, "big")))
        new_len = pos + 2 + keep
        nrec = i + 1
    else:
        new_len = fm.rec_pos[i]
        nrec = i
    lrecl = max(rec_len) if nrec else 0
    commit_stream(fs, key, fm, patches, new_len, nrec=nrec, lrecl=lrecl, v_index=(rec_pos, rec_len, rec_bin),
                  struct_from=fm.rec_pos[i])


def rewrite_records(fs: "CmsFilesystem", key: tuple[bytes, bytes], fm: FileMap, recs: list[bytes]) -> None:
    """Replace every record (the text view's writes). Raises NoSpace, FileTooBig."""
    if fm.recfm == "F":
        blob = b"".join(recs)
        commit_stream(fs, key, fm, [(0, blob)], len(blob), nrec=len(recs), lrecl=fm.lrecl)
        return
    empty = FileMap("V", 0, 0, fm.tree, 0, array("Q"), array("I"), array("Q", [0]))
    blob, (rec_pos, rec_len, rec_bin), new_len, lrecl = _v_append(empty, recs)
    index = (rec_pos, rec_len, array("Q", [0]) + rec_bin)
    old_len = fm.stream_len
    patches = [(0, blob)]
    if new_len < old_len:
        # Every old byte past the new end must read as zero in the blocks we keep.
        end_blk = -(-new_len // fs.vol.block_size) * fs.vol.block_size
        patches.append((new_len, bytes(max(0, min(old_len, end_blk) - new_len))))
    commit_stream(fs, key, fm, patches, new_len, nrec=len(recs), lrecl=lrecl, v_index=index, struct_from=0)


def read_all(fs: "CmsFilesystem", fm: FileMap) -> bytes:
    return read_stream(fs.vol, fm.tree, 0, fm.stream_len)
