"""fsck for CMS EDF: every invariant of shared/specs/cms-edf.md, each finding naming blocks.

Severity: "error" for anything that can lose or cross-link data or stop the reference from
mounting (label sanity incl. DOP 4/5, ADTFSTSZ/ADTNFST; unreadable or inconsistent trees; FST
record/block counts vs trees; V pointer disp/hi_record; reachable blocks not marked in the map;
blocks reached twice; duplicate or invalid names). "notice" for what an interrupted fsproto write
or the reference leaves and is harmless: leaked blocks, a stale ADTUSED, a stale DIRECTOR
data-block count (the reference never updates it), the states listed in namespace.py, a tree
one level off the reference's rule, a V LRECL above the longest record.

``repair=True`` fixes: the map (marks reachable blocks, clears leaks), ADTUSED, the DIRECTOR
block count, and the directory (removes holes, the duplicate of an interrupted delete, the
loser of an interrupted rename, stale slots past the end; clears rename marks). Repair writes
in place and is not itself crash-safe. Cross-links, unreadable files and bad names are reported
as not fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsproto.errors import FormatError, UnknownFormat
from fsproto.formats.base import FsckReport, Problem, Progress
from fsproto.formats.blockmap import BlockClaims
from fsproto.formats.cms.alloc import AllocMap
from fsproto.formats.cms.directory import Directory, Fst, valid_stored_name
from fsproto.formats.cms.fs import load_filemap
from fsproto.formats.cms.layout import FST_SIZE, RECFM_F, RECFM_V
from fsproto.formats.cms.pointers import Tree, levels_for, pointer_block_bytes, v_leaf_meta
from fsproto.formats.cms.volume import Volume, decode_date, find_label, validate_label
from fsproto.rawdev import BlockDevice

_MAX_LISTED = 12


def _ranges(blocks: list[int]) -> str:
    """Compact list: 5-9, 12, 40-41 (first few ranges and a count)."""
    out: list[str] = []
    blocks = sorted(blocks)
    i = 0
    while i < len(blocks) and len(out) < _MAX_LISTED:
        j = i
        while j + 1 < len(blocks) and blocks[j + 1] == blocks[j] + 1:
            j += 1
        out.append(f"{blocks[i]}" if i == j else f"{blocks[i]}-{blocks[j]}")
        i = j + 1
    more = "" if i >= len(blocks) else f", ... ({len(blocks)} blocks in all)"
    return ", ".join(out) + more


def _check_tree_blocks(vol: Volume, tree: Tree, what: str, report: FsckReport) -> None:
    """Every pointer block must hold exactly what the tree it describes implies."""
    bs = vol.block_size
    for lvl, blocks in enumerate(tree.pointer_levels, 1):
        for i, b in enumerate(blocks):
            if not b:
                continue
            want = pointer_block_bytes(tree, lvl, i, bs)
            have = vol.read_block(b)
            if have != want:
                diff = next(k for k in range(bs) if have[k] != want[k])
                report.add("pointer-block", f"{what}: pointer block {b} (level {lvl}) differs from its tree "
                           f"at offset {diff}")


@dataclass
class Walk:
    """What fsck's read-only walk found: the report, who claims each block, and (when the walk got
    that far) the volume, directory and map, plus what a repair would change. The block map
    (blockmap.py) is drawn from this same walk."""

    report: FsckReport
    claims: BlockClaims = field(default_factory=BlockClaims)
    vol: Volume | None = None
    directory: Directory | None = None
    amap: AllocMap | None = None
    missing: list[int] = field(default_factory=list)
    leaked: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    map_problems: tuple[Problem | None, ...] = ()

    @property
    def complete(self) -> bool:
        return self.amap is not None and bool(self.map_problems)


def fsck(dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
    """Check (and with *repair*, fix) the CMS volume on *dev*. Raises only DeviceError for I/O."""
    w = walk(dev, progress=progress)
    if repair and not dev.read_only and w.complete:
        _repair(w.vol, w.directory, w.amap, w.report, w.missing, w.leaked, w.stale, w.map_problems)
    return w.report


def walk(dev: BlockDevice, *, progress: Progress | None = None) -> Walk:
    """fsck's checks without repairs: never writes. Raises only DeviceError for I/O."""
    report = FsckReport(device=dev.name)
    w = Walk(report)
    try:
        label = find_label(dev)
        validate_label(label, dev)
    except (UnknownFormat, FormatError) as e:
        report.add("label", str(e))
        return w
    vol = w.vol = Volume(dev, label)
    bs = vol.block_size
    try:
        d = w.directory = Directory(vol, strict=False)
    except FormatError as e:
        report.add("directory", str(e))
        return w
    claims = w.claims

    def own(blocks, who: str, role: str, owner: str = "", level: int = 0) -> None:
        claims.claim(blocks, who, role, owner, level)

    label_block = label.offset // bs + 1  # CKD: block 3; FBA (label at byte 512): block 1 or 2
    own([b for b in (1, 2, 3) if b != label_block], "reserved blocks 1-3", "reserved")
    own((label_block,), "reserved blocks 1-3", "label")
    own(d.tree.leaves, "DIRECTOR", "directory", "DIRECTOR")
    for lvl, blocks in enumerate(d.tree.pointer_levels, 1):
        own(blocks, "DIRECTOR pointers", "pointer", "DIRECTOR", lvl)
    _check_tree_blocks(vol, d.tree, "DIRECTOR", report)
    director = d.director
    if director.data_blocks != len(d.tree.leaves):
        report.add("director-blocks-stale", f"DIRECTOR FST (block {label.dop}) says {director.data_blocks} data "
                   f"block(s), the directory has {len(d.tree.leaves)}", severity="notice")
    if director.levels != levels_for(len(d.tree.leaves), d.tree.ppb):
        report.add("levels-rule", f"DIRECTOR: {director.levels} levels, the reference's rule gives "
                   f"{levels_for(len(d.tree.leaves), d.tree.ppb)}", severity="notice")
    am = d.allocmap
    try:
        amap = AllocMap.load(vol, am.fop, am.levels, am.records)
    except FormatError as e:
        report.add("allocmap", str(e))
        return w
    w.amap = amap
    own(amap.tree.leaves, "ALLOCMAP", "allocmap", "ALLOCMAP")
    for lvl, blocks in enumerate(amap.tree.pointer_levels, 1):
        own(blocks, "ALLOCMAP pointers", "pointer", "ALLOCMAP", lvl)
    if am.lrecl != bs:
        report.add("allocmap", f"ALLOCMAP LRECL {am.lrecl} is not the block size {bs}")
    for a in d.anomalies:
        report.add("directory-state", a, severity="notice")
    for j, i in d.conflicts:
        report.add("duplicate-name", f"slots {j} and {i} both hold {d.slots[i].display_name()} "
                   f"(block {d.block_of(i)})")
    stale = _stale_slots(d)
    if stale:
        report.add("directory-state", f"slot(s) {', '.join(map(str, stale))} past the record count are not "
                   "free", severity="notice")
    files = d.files()
    for n, (slot, fst) in enumerate(files):
        if progress:
            progress(n, len(files))
        _check_file(vol, d, slot, fst, report, own)
    if progress:
        progress(len(files), len(files))
    for b, prev, c in claims.cross:
        report.add("cross-link", f"block {b} is used by {prev.who} and {c.who}")
    # Map vs reachable.
    missing = [b for b in claims if b <= vol.num_blocks and not amap.is_used(b)]
    leaked = [b for b in range(1, vol.num_blocks + 1) if amap.is_used(b) and b not in claims]
    p_missing = report.add("alloc-map-missing", f"blocks in use but free in the map: {_ranges(missing)}") \
        if missing else None
    p_leak = report.add("alloc-map-leak", f"blocks marked in the map but not reachable: {_ranges(leaked)}",
                        severity="notice") if leaked else None
    true_used = amap.used + len(missing) - len(leaked)
    p_used = None
    if label.fields["ADTUSED"] != true_used:
        p_used = report.add("adtused", f"label ADTUSED {label.fields['ADTUSED']}, blocks in use {true_used}",
                            severity="notice")
    report.summary.update(block_size=bs, blocks=vol.num_blocks, used=true_used, files=len(files),
                          directory_blocks=len(d.tree.leaves))
    w.missing, w.leaked, w.stale, w.map_problems = missing, leaked, stale, (p_missing, p_leak, p_used)
    return w


def _stale_slots(d: Directory) -> list[int]:
    bs = d.vol.block_size
    per = bs // FST_SIZE
    out = []
    last_blk = len(d.blocks) - 1
    for s in range(d.count, (last_blk + 1) * per):
        off = (s * FST_SIZE) % bs
        if any(d.blocks[last_blk][off : off + FST_SIZE]):
            out.append(s)
    return out


def _check_file(vol: Volume, d: Directory, slot: int, fst: Fst, report: FsckReport, own) -> None:
    bs = vol.block_size
    where = f"{fst.display_name()} (slot {slot}, directory block {d.block_of(slot)})"
    if not valid_stored_name(fst):
        report.add("bad-name", f"{where}: name bytes {fst.fname.hex()}.{fst.ftype.hex()} are not a CMS name")
    mode = fst.mode_str()
    if not (len(mode) == 2 and mode[0].isalpha() and mode[0].isupper() and mode[1] in "0123456"):
        report.add("bad-mode", f"{where}: file mode {fst.fmode.hex()} is not a letter and a digit 0-6",
                   severity="notice")
    if fst.recfm not in (RECFM_F, RECFM_V):
        report.add("bad-recfm", f"{where}: record format byte {fst.recfm.hex()}")
        return
    want_ptr = 4 if fst.recfm == RECFM_F else 12
    if fst.ptr_size != want_ptr:
        report.add("ptr-size", f"{where}: pointer size {fst.ptr_size}, {fst.recfm_char} files use {want_ptr}")
    try:
        decode_date(fst.date, fst.century)
    except ValueError:
        report.add("bad-date", f"{where}: date {fst.date.hex()} is not BCD", severity="notice")
    try:
        fm = load_filemap(vol, fst)
    except FormatError as e:
        report.add("file-unreadable", f"{where}: {e}")
        return
    tree = fm.tree
    name = fst.display_name()
    own([b for b in tree.leaves if b], name, "data", name)
    for lvl, blocks in enumerate(tree.pointer_levels, 1):
        own(blocks, f"{name} pointers", "pointer", name, lvl)
    n = len(tree.leaves)
    if fst.data_blocks != tree.data_block_count():
        report.add("data-blocks", f"{where}: FST says {fst.data_blocks} data blocks, the tree holds "
                   f"{tree.data_block_count()}")
    if fst.levels != levels_for(n, tree.ppb):
        report.add("levels-rule", f"{where}: {fst.levels} levels for {n} blocks; the reference's rule gives "
                   f"{levels_for(n, tree.ppb)}", severity="notice")
    if fst.recfm == RECFM_F:
        if fst.records and fst.lrecl == 0:
            report.add("lrecl", f"{where}: F file with records and LRECL 0")
    else:
        if -(-fm.stream_len // bs) != n:
            report.add("v-blocks", f"{where}: records end in block {-(-fm.stream_len // bs)} of {n}")
        longest = max(fm.rec_len) if fm.nrec else 0
        if fst.lrecl < longest:
            report.add("lrecl", f"{where}: LRECL {fst.lrecl} is below the longest record ({longest})")
        elif fst.lrecl > longest:
            report.add("lrecl-high", f"{where}: LRECL {fst.lrecl} is above the longest record ({longest})",
                       severity="notice")
        if tree.pointer_levels:
            for j in range(n):
                h, dsp = v_leaf_meta(fm.rec_pos, fm.nrec, j, bs, fm.stream_len)
                if (h, dsp) != (tree.hi[j], tree.disp[j]):
                    pb = tree.pointer_levels[0][j // tree.ppb]
                    report.add("v-pointer", f"{where}: pointer block {pb} entry {j % tree.ppb} (data block "
                               f"{tree.leaves[j]}): hi_record {tree.hi[j]} disp {tree.disp[j]}, records say "
                               f"{h} {dsp}")
                    return
    if tree.pointer_levels:
        _check_tree_blocks(vol, tree, where, report)


def _repair(vol: Volume, d: Directory, amap: AllocMap, report: FsckReport, missing: list[int],
            leaked: list[int], stale: list[int], map_problems) -> None:
    bs = vol.block_size
    fixable_dir = [p for p in report.problems if p.code == "directory-state"]
    if fixable_dir or stale:
        _repair_directory(vol, d, amap, leaked)
        for p in fixable_dir:
            p.fixed = True
    # With an unreadable file or a cross-link, "unreachable" blocks may still be someone's data:
    # only mark, never free, until those errors are dealt with.
    unsure = any(p.code in ("file-unreadable", "cross-link", "duplicate-name") for p in report.problems)
    for b in missing:
        amap.mark(b)
    if not unsure:
        for b in leaked:
            amap.clear(b)
    amap.write_dirty()
    for p in map_problems:
        if p is not None and not (unsure and p.code in ("alloc-map-leak", "adtused")):
            p.fixed = True
    for p in report.problems:
        if p.code == "director-blocks-stale":
            d.slots[0].data_blocks = len(d.tree.leaves)
            d.blocks[0][:FST_SIZE] = d.slots[0].to_bytes()
            vol.write_blocks(d.tree.leaves[0], d.blocks[0])
            p.fixed = True
    if vol.label.fields["ADTUSED"] != amap.used:
        fields = dict(vol.label.fields)
        fields["ADTUSED"] = amap.used
        vol.write_label(fields)
    vol.flush()
    del bs


def _repair_directory(vol: Volume, d: Directory, amap: AllocMap, leaked: list[int]) -> None:
    """Rewrite the directory dense: live FSTs in slot order, marks cleared, the rest zero."""
    bs = vol.block_size
    per = bs // FST_SIZE
    live = [d.slots[0], d.slots[1]] + [f for _, f in d.files()]
    for f in live:
        f.reserved_60 = b"\x00" + f.reserved_60[1:]
    count = len(live)
    nblocks = -(-count // per)
    old = d.tree
    if nblocks < len(old.leaves):
        # Drop trailing directory blocks (and pointer blocks no longer needed); fsck's map pass
        # already counts them as reachable, so clear them explicitly.
        lv = levels_for(nblocks, old.ppb)
        from fsproto.formats.cms.pointers import level_counts

        counts = level_counts(nblocks, lv, old.ppb)
        new = Tree(4, old.ppb, old.leaves[:nblocks])
        new.pointer_levels = [old.pointer_levels[k][: counts[k + 1]] for k in range(lv)]
        for b in set(old.leaves[nblocks:]) | (set(old.pointer_blocks()) - set(new.pointer_blocks())):
            amap.clear(b)
        for lvl, blocks in enumerate(new.pointer_levels, 1):
            for i, b in enumerate(blocks):
                vol.write_blocks(b, pointer_block_bytes(new, lvl, i, bs))
        d.tree = new
        d.blocks = d.blocks[:nblocks]
    d.slots = live
    d.count = count
    d.slots[0].records = count
    d.slots[0].fop, d.slots[0].levels, d.slots[0].data_blocks = d.tree.fop, d.tree.levels, len(d.tree.leaves)
    for j in range(len(d.blocks)):
        buf = bytearray(bs)
        for k in range(per):
            s = j * per + k
            if s < count:
                buf[k * FST_SIZE : (k + 1) * FST_SIZE] = live[s].to_bytes()
        d.blocks[j] = buf
    for j in range(len(d.blocks) - 1, -1, -1):  # block 0 (the DIRECTOR count) last
        vol.write_blocks(d.tree.leaves[j], d.blocks[j])
    del leaked
