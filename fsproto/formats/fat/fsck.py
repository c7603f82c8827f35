"""Check and repair a FAT volume: chains, cross-links, sizes, lost clusters, directory loops.

References: fatgen103 sections 4-7; the repairs follow dosfstools' fsck.fat: a broken or
cross-linked chain is cut at the last good cluster and the size clamped to it, a chain longer
than the size is trimmed, a size longer than the chain is shortened, lost clusters are freed,
orphan long-name parts are deleted, FAT copies are rewritten from the first.

Memory: one 4-byte owner slot per cluster plus one directory at a time; every walk is bounded
by the cluster count, so loops end.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import replace

from fsproto.formats.base import FsckReport, Progress
from fsproto.formats.fat import layout
from fsproto.formats.fat.directory import DirEntry, Directory, parse_entries
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.files import clusters_for
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import BlockDevice


class _Checker:
    def __init__(self, dev: BlockDevice, repair: bool, progress: Progress | None) -> None:
        self.vol = Volume(dev)
        self.fat = FatTable(self.vol)
        self.repair = repair
        self.progress = progress
        self.report = FsckReport(dev.name)
        g = self.vol.geo
        self.cs = g.cluster_size
        self.owner = array("I", bytes(4 * (g.cluster_count + 2)))
        self.names: list[str] = [""]  # owner id -> path (id 0 = nobody)
        self.dir_ids: set[int] = set()  # owner ids that are directories (for the block map)
        self.crossed: dict[int, tuple[int, int]] = {}  # cluster -> (first owner, second claimant)
        self.files = self.dirs = 0

    def problem(self, code: str, message: str, *, severity: str = "error", fixable: bool = True) -> None:
        p = self.report.add(code, message, severity=severity)
        if self.repair and fixable:
            p.fixed = True

    # -- chains -------------------------------------------------------------------------------
    def walk(self, start: int, oid: int) -> tuple[list[int], str | None, int]:
        """Claim the chain from *start* for owner *oid*; stop at the first fault.

        Returns (good clusters, fault or None, cluster where the fault is). Faults: "start",
        "free", "bad", "off-disk", "loop", "cross" (claimed by another owner).
        """
        fat, owner = self.fat, self.owner
        if start == 0:
            return [], None, 0
        if not 2 <= start <= fat.max_cluster:
            return [], "start", start
        if owner[start]:
            return [], ("loop" if owner[start] == oid else "cross"), start
        out = [start]
        owner[start] = oid
        c = start
        while True:
            nxt = fat.get(c)
            if fat.is_eoc(nxt):
                return out, None, 0
            fault = ("free" if nxt == 0 else "bad" if nxt == fat.bad else
                     "off-disk" if not 2 <= nxt <= fat.max_cluster else
                     "loop" if owner[nxt] == oid else "cross" if owner[nxt] else None)
            if fault:
                return out, fault, c if fault != "cross" else nxt
            owner[nxt] = oid
            out.append(nxt)
            c = nxt

    def cut(self, chain: list[int], keep: int) -> None:
        """Keep the first *keep* clusters of *chain*: end it there and free (un-own) the rest."""
        if keep:
            self.fat.set(chain[keep - 1], self.fat.eoc)
        for c in chain[keep:]:
            self.owner[c] = 0  # the lost-cluster pass frees them

    def check_chain(self, path: str, e: DirEntry, oid: int) -> tuple[list[int], DirEntry]:
        """Walk and (when repairing) fix one entry's chain and size; returns the kept chain and entry."""
        chain, fault, at = self.walk(e.cluster, oid)
        if fault == "start":
            self.problem("bad-start", f"{path}: first cluster {at} is outside the disk")
            e = replace(e, cluster=0, size=0)
        elif fault == "cross":
            self.crossed.setdefault(at, (self.owner[at], oid))
            other = self.names[self.owner[at]]
            self.problem("cross-link", f"{path}: cluster {at} is also used by {other}; truncating {path}")
            if self.repair and chain:
                self.cut(chain, len(chain))
            e = replace(e, cluster=e.cluster if chain else 0, size=min(e.size, len(chain) * self.cs))
        elif fault:
            what = {"free": "reaches a cluster marked free", "bad": "reaches a cluster marked bad",
                    "off-disk": f"runs off the disk (cluster {at} links to {self.fat.get(at)})",
                    "loop": "loops back on itself"}[fault]
            self.problem("bad-chain", f"{path}: chain {what} at cluster {at}")
            if self.repair and chain:
                self.cut(chain, len(chain))
            e = replace(e, size=min(e.size, len(chain) * self.cs))
        if not e.is_dir:
            need = clusters_for(e.size, self.cs)
            if len(chain) > need:
                self.problem("size-mismatch", f"{path}: size {e.size} needs {need} cluster(s), chain has "
                                              f"{len(chain)} (from cluster {e.cluster}); trimming the chain")
                if self.repair:
                    self.cut(chain, need)
                chain = chain[:need]
                if not need:
                    e = replace(e, cluster=0)
            elif len(chain) < need:
                self.problem("size-mismatch", f"{path}: size {e.size} but chain has only {len(chain)} "
                                              f"cluster(s) of {self.cs} B; shortening the size")
                e = replace(e, size=len(chain) * self.cs)
        return chain, e

    # -- the tree -----------------------------------------------------------------------------
    def run(self) -> FsckReport:
        g = self.vol.geo
        self.check_fat_copies()
        root_chain: list[int] | None = None
        if g.fat_type == 32:
            self.names.append("/")
            self.dir_ids.add(1)
            root_chain, fault, at = self.walk(g.root_cluster, 1)
            if fault:
                self.problem("bad-chain", f"/: root directory chain breaks at cluster {at} ({fault})")
                if self.repair and root_chain:
                    self.cut(root_chain, len(root_chain))
        queue = deque([(g.root_cluster if g.fat_type == 32 else 0, "/", root_chain, 0)])
        visited = {g.root_cluster if g.fat_type == 32 else 0}
        while queue:
            cluster, path, chain, parent = queue.popleft()
            self.dirs += 1
            if self.progress:
                self.progress(self.dirs, self.dirs + len(queue))
            d = Directory(self.vol, self.fat, cluster, chain=chain)
            self.check_dots(d, path, cluster, parent)
            orphans: list[int] = []
            entries = parse_entries(d.raw, orphans=orphans)
            if orphans:
                self.problem("orphan-lfn", f"{path}: {len(orphans)} long-name part(s) without their 8.3 entry "
                                           f"(slots {', '.join(map(str, orphans[:8]))})")
                if self.repair:
                    for s in orphans:
                        d.raw[s * 32] = layout.DIR_FREE
                    for s in orphans:
                        d.write_slot(s)
            for e in entries:
                sub = f"{path.rstrip('/')}/{e.name}"
                if e.is_dir and (e.cluster in visited or e.cluster == 0):
                    self.problem("dir-loop", f"{sub}: directory points at cluster {e.cluster}, already in the "
                                             "tree (a directory inside itself); removing the entry")
                    if self.repair:
                        d.remove(e)
                    continue
                self.names.append(sub)
                oid = len(self.names) - 1
                if e.is_dir:
                    self.dir_ids.add(oid)
                kept, fixed = self.check_chain(sub, e, oid)
                if fixed != e and self.repair:
                    if e.is_dir and not kept:
                        d.remove(e)  # a directory with no clusters cannot be kept
                    else:
                        d.update(fixed)
                if e.is_dir:
                    if not kept:
                        continue  # bad start: nothing to descend into (the entry itself was reported)
                    visited.add(e.cluster)
                    queue.append((e.cluster, sub, kept, cluster))
                else:
                    self.files += 1
        self.check_lost()
        self.check_fsinfo()
        if self.repair:
            self.fat.flush()
            self.vol.dev.flush()
        self.report.summary = {"files": self.files, "directories": self.dirs,
                               "free clusters": self.fat.free_count, "clusters": g.cluster_count}
        return self.report

    def check_dots(self, d: Directory, path: str, cluster: int, parent: int) -> None:
        if path == "/":
            return
        want = ((0, b".          ", cluster), (1, b"..         ", parent if parent != self.root() else 0))
        for slot, name, target in want:
            raw = d.raw[slot * 32 : slot * 32 + 32]
            got = int.from_bytes(raw[26:28], "little") | (int.from_bytes(raw[20:22], "little") << 16)
            if bytes(raw[:11]) != name or got != target:
                self.problem("bad-dot", f"{path}: entry {name.strip().decode()!r} should point at cluster {target}")
                if self.repair:
                    d.raw[slot * 32 : slot * 32 + 11] = name
                    d.raw[slot * 32 + 11] = layout.ATTR_DIRECTORY
                    d.raw[slot * 32 + 20 : slot * 32 + 22] = (target >> 16).to_bytes(2, "little")
                    d.raw[slot * 32 + 26 : slot * 32 + 28] = (target & 0xFFFF).to_bytes(2, "little")
                    d.write_slot(slot)

    def root(self) -> int:
        return self.vol.geo.root_cluster if self.vol.geo.fat_type == 32 else 0

    def check_fat_copies(self) -> None:
        g = self.vol.geo
        if g.active_fat is not None or g.num_fats < 2:
            return
        first = self.fat.read_copy(0)
        for copy in range(1, g.num_fats):
            if self.fat.read_copy(copy) != first:
                self.problem("fat-copies-differ", f"FAT copy {copy + 1} differs from FAT 1; rewriting it")
                if self.repair:
                    self.fat.mark_all_dirty()
                return

    def check_lost(self) -> None:
        fat, owner = self.fat, self.owner
        lost = [c for c in range(2, fat.max_cluster + 1) if not owner[c] and fat.get(c) not in (0, fat.bad)]
        if lost:
            shown = ", ".join(map(str, lost[:8])) + (", ..." if len(lost) > 8 else "")
            self.problem("lost-clusters", f"{len(lost)} cluster(s) in use by no file: {shown}; freeing them")
            if self.repair:
                fat.free_chain(lost)

    def check_fsinfo(self) -> None:
        info = self.vol.read_fsinfo()
        if info is None:
            return
        free = self.fat.free_count
        if info["FSI_Free_Count"] not in (free, layout.FSI_UNKNOWN):
            self.problem("fsinfo-free-count", f"FSInfo says {info['FSI_Free_Count']} free clusters, the FAT "
                                              f"has {free}", severity="notice")
            if self.repair:
                self.fat.flush()
                self.vol.write_fsinfo(free, info["FSI_Nxt_Free"])


def walk(dev: BlockDevice, *, progress: Progress | None = None) -> _Checker:
    """fsck's checks without repairs (never writes); the checker keeps who owns each cluster
    (``owner``, ``names``, ``dir_ids``, ``crossed``) for the block map. Raises as :func:`fsck`."""
    checker = _Checker(dev, False, progress)
    checker.run()
    return checker


def fsck(dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
    """Check (and with *repair*, fix) the FAT volume on *dev*.

    Raises UnknownFormat / FormatError when the boot sector itself is unusable, DeviceError,
    ReadOnlyError (repair on a read-only device).
    """
    return _Checker(dev, repair, progress).run()
