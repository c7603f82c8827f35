"""A block map cut into drawable cells, and the colour of each: shared by the terminal and PNG maps.

One cell is one unit while the map fits the cell budget, else a run of ``ceil(units / budget)``
units. A run's colour is, in this order: a problem role any of its units has (claimed twice,
unreadable, unmarked, leaked, bad: a cross-link must not vanish into a run of data), the
highlighted file when any unit is its, else the role that holds most of its units. Data is
coloured by file (a palette of :data:`DATA_SHADES` shades in first-appearance order) and
pointer blocks by level.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from fsproto.formats.blockmap import PROBLEM_ROLES, ROLES, BlockMap, Extent

Rgb = tuple[int, int, int]

ROLE_RGB: dict[str, Rgb] = {
    "label": (220, 20, 60),
    "reserved": (128, 128, 128),
    "allocmap": (255, 140, 0),
    "directory": (0, 128, 128),
    "free": (230, 230, 230),
    "leaked": (255, 0, 255),
    "unmarked": (255, 105, 180),
    "cross-linked": (255, 0, 0),
    "bad": (0, 0, 0),
    "unreadable": (64, 64, 64),
    "unknown": (200, 200, 160),
}
POINTER_RGB: tuple[Rgb, ...] = ((160, 82, 45), (110, 50, 20), (70, 30, 10))  # level 1, 2, 3 and above
DATA_RGB: tuple[Rgb, ...] = ((100, 149, 237), (46, 139, 87), (106, 90, 205), (70, 130, 180),
                             (107, 142, 35), (153, 50, 204), (95, 158, 160), (65, 105, 225))
DATA_SHADES = len(DATA_RGB)
HIGHLIGHT_RGB: Rgb = (255, 255, 0)
# Terminal glyphs: problems get a letter too, so they read without colour.
GLYPH = {"free": "·", "leaked": "L", "unmarked": "!", "cross-linked": "X", "bad": "B", "unreadable": "?",
         "unknown": "~"}
FULL = "█"


@dataclass(frozen=True)
class Cell:
    start: int
    count: int
    key: str  # colour key: a role, "data:N", "pointer:L" or "highlight"
    role: str  # the role the colour stands for


def colour_key(e: Extent, owners: dict[str, int], highlight: str | None) -> str:
    if e.role in PROBLEM_ROLES or e.role in ("free", "unknown"):
        return e.role
    if highlight is not None and e.owner == highlight:
        return "highlight"
    if e.role == "data":
        return f"data:{owners.get(e.owner, 0) % DATA_SHADES}"
    if e.role == "pointer":
        return f"pointer:{min(max(e.level, 1), len(POINTER_RGB))}"
    return e.role


def rgb(key: str) -> Rgb:
    if key == "highlight":
        return HIGHLIGHT_RGB
    kind, _, n = key.partition(":")
    if kind == "data":
        return DATA_RGB[int(n)]
    if kind == "pointer":
        return POINTER_RGB[int(n) - 1]
    return ROLE_RGB.get(key, (255, 255, 255))


def hex_colour(key: str) -> str:
    r, g, b = rgb(key)
    return f"#{r:02x}{g:02x}{b:02x}"


def legend_keys(bmap: BlockMap, highlight: str | None) -> list[tuple[str, str, int]]:
    """(colour key, words, units) for each role present, in :data:`ROLES` order; data and
    pointers show their first shade, the highlight its own line."""
    out = []
    counts = bmap.role_counts()
    for role, n in counts.items():
        if role == "data":
            out.append(("data:0", f"{ROLES['data']} (one of {DATA_SHADES} shades per file)", n))
        elif role == "pointer":
            levels = sorted({min(max(e.level, 1), len(POINTER_RGB)) for e in bmap.extents if e.role == "pointer"})
            for lv in levels:
                m = sum(e.count for e in bmap.extents if e.role == "pointer" and min(max(e.level, 1), 3) == lv)
                words = f"pointer block, level {lv}" + (" and above" if lv == len(POINTER_RGB) else "")
                out.append((f"pointer:{lv}", words, m))
        else:
            out.append((role, ROLES.get(role, role), n))
    if highlight is not None:
        out.append(("highlight", f"{highlight} (highlighted)", len(bmap.units_of(highlight))))
    return out


def cells(bmap: BlockMap, budget: int, highlight: str | None = None) -> list[Cell]:
    """The map as at most *budget* cells (see the module docstring for a run's colour)."""
    per = max(1, -(-bmap.count // budget))
    owners = {o: i for i, o in enumerate(bmap.owners())}
    keyed = [(e, colour_key(e, owners, highlight)) for e in bmap.extents]
    out: list[Cell] = []
    i = 0
    for start in range(bmap.first, bmap.first + bmap.count, per):
        end = min(start + per, bmap.first + bmap.count)
        while keyed[i][0].end <= start:
            i += 1
        share: dict[str, int] = {}
        role_of: dict[str, str] = {}
        j = i
        while j < len(keyed) and keyed[j][0].start < end:
            e, key = keyed[j]
            share[key] = share.get(key, 0) + min(e.end, end) - max(e.start, start)
            role_of[key] = e.role
            j += 1
        key = next((k for k in PROBLEM_ROLES if k in share), None)
        if key is None:
            key = "highlight" if "highlight" in share else max(share, key=share.__getitem__)
        out.append(Cell(start, end - start, key, role_of[key]))
    return out


def cell_index(cell_list: list[Cell], unit: int) -> int:
    """Which cell draws *unit*."""
    return bisect_right([c.start for c in cell_list], unit) - 1
