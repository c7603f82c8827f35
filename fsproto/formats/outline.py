"""A format's structures as a tree to browse: what ``fsproto explore`` shows on its left.

A :class:`Node` names a structure, the units (blocks, sectors) that hold it, the construct
struct to lay over those bytes and where; children are computed only when asked for, so a
1,800-block file costs nothing until it is opened. A part that cannot be read becomes a node
with :attr:`Node.error` set, never an exception: an explorer is for damaged disks too.

:func:`generic_outline` derives a tree from any :class:`~fsproto.formats.blockmap.BlockMap`
(role -> extents -> units, each with the extent's struct), so a plugin format that implements
``block_map`` gets an explorer without writing an outline; CMS and FAT write their own
(label -> directory -> file -> pointer levels -> data; boot sector -> FATs -> directories ->
cluster chains) in ``formats/<fmt>/outline.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fsproto.formats.blockmap import ROLES, BlockMap, Extent

MAX_CHILDREN = 512  # longer lists are cut into groups of this many


@dataclass
class Node:
    """One structure in the tree."""

    label: str
    start: int | None = None  # first unit the hex view shows (None: nothing to show)
    count: int = 1  # units shown
    struct: Any = None  # construct struct over the shown bytes
    offset: int = 0  # byte offset of *struct* in the shown bytes
    role: str = ""  # a ROLES key (the colour)
    error: str = ""  # why this part cannot be read (the explorer marks it)
    children: Callable[[], list["Node"]] | None = None
    key: str = ""  # stable identifier for search and tests, e.g. "file:PROFILE.EXEC"

    @property
    def expandable(self) -> bool:
        return self.children is not None


def guarded(make: Callable[[], list[Node]], what: str) -> Callable[[], list[Node]]:
    """*make*, with any fsproto error turned into one error node (a damaged part is marked)."""
    from fsproto.errors import FsprotoError

    def run() -> list[Node]:
        try:
            return make()
        except FsprotoError as e:
            return [Node(f"{what}: unreadable", error=str(e), role="unreadable")]

    return run


def grouped(nodes: list[Node], what: str) -> list[Node]:
    """*nodes*, cut into groups of :data:`MAX_CHILDREN` when there are more."""
    if len(nodes) <= MAX_CHILDREN:
        return nodes
    out = []
    for i in range(0, len(nodes), MAX_CHILDREN):
        part = nodes[i : i + MAX_CHILDREN]
        out.append(Node(f"{what} {i}-{i + len(part) - 1}", children=lambda part=part: part))
    return out


def unit_node(bmap: BlockMap, unit: int) -> Node:
    """A node for any unit, described by its extent (a jump target, a followed pointer)."""
    e = bmap.extent_at(unit)
    return Node(f"{bmap.unit} {unit}: {e.describe()}", unit, 1, e.struct, 0, e.role, key=f"unit:{unit}")


def _extent_node(bmap: BlockMap, e: Extent) -> Node:
    span = f"{e.start}" if e.count == 1 else f"{e.start}-{e.end - 1}"
    label = f"{bmap.unit}s {span}: {e.describe()}" if e.count > 1 else f"{bmap.unit} {span}: {e.describe()}"
    if e.count == 1:
        return Node(label, e.start, 1, e.struct, 0, e.role, key=f"unit:{e.start}")
    return Node(label, e.start, 1, e.struct, 0, e.role,
                children=lambda: grouped([unit_node(bmap, u) for u in range(e.start, e.end)], bmap.unit + "s"))


def generic_outline(bmap: BlockMap) -> Node:
    """Role -> extents -> units, for any format with a block map."""
    by_role: dict[str, list[Extent]] = {}
    for e in bmap.extents:
        by_role.setdefault(e.role, []).append(e)

    def roles() -> list[Node]:
        out = []
        for role, extents in by_role.items():
            n = sum(e.count for e in extents)
            out.append(Node(f"{ROLES.get(role, role)} ({n} {bmap.unit}s)", role=role, key=f"role:{role}",
                            children=lambda ex=extents: grouped([_extent_node(bmap, e) for e in ex], "extents")))
        return out

    return Node(f"{bmap.device} ({bmap.format}, {bmap.count} {bmap.unit}s of {bmap.unit_size} B)",
                children=roles, key="root")
