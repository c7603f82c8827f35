"""The block map in a terminal (rich): rows of coloured cells, a legend with counts, the findings.

Problems carry a letter as well as a colour (``X`` claimed twice, ``?`` unreadable, ``L``
leaked, ``!`` unmarked, ``B`` bad), so a map read without colour (piped, NO_COLOR) still shows
them; free units are ``·``.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fsproto.cli.common import one_line
from fsproto.formats.blockmap import BlockMap
from fsproto.view.cells import FULL, GLYPH, cells, hex_colour, legend_keys

MAX_ROWS = 32


def render(bmap: BlockMap, *, width: int = 80, highlight: str | None = None) -> RenderableType:
    """The whole map as one rich renderable, *width* columns wide."""
    label_w = len(str(bmap.first + bmap.count - 1)) + 1
    per_row = max(8, min(128, (width - label_w - 1) // 8 * 8))
    cell_list = cells(bmap, per_row * MAX_ROWS, highlight)
    per = cell_list[0].count if cell_list else 1
    unit = bmap.unit
    title = Text(f"{one_line(bmap.device)}: {bmap.format}, {bmap.count} {unit}s of {bmap.unit_size} B; "
                 f"one cell = {per} {unit}{'s' if per > 1 else ''}", style="bold")
    grid = Text()
    for r in range(0, len(cell_list), per_row):
        grid.append(f"{cell_list[r].start:>{label_w - 1}} ", style="dim")
        for c in cell_list[r : r + per_row]:
            glyph = GLYPH.get(c.role, FULL) if c.key != "highlight" else FULL
            style = hex_colour(c.key) if c.role != "free" else "grey50"
            grid.append(glyph, style=style)
        grid.append("\n")
    legend = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    legend.add_column("")
    legend.add_column("role")
    legend.add_column(f"{unit}s", justify="right")
    legend.add_column("%", justify="right")
    for key, words, n in legend_keys(bmap, highlight):
        glyph = GLYPH.get(key, FULL) if key != "highlight" else FULL
        legend.add_row(Text(glyph * 2, style=hex_colour(key) if key != "free" else "grey50"), escape(one_line(words)),
                       str(n), f"{100 * n / bmap.count:.1f}")
    parts: list[RenderableType] = [title, grid, legend]
    if bmap.problems:
        parts.append(Text("fsck findings:", style="bold"))
        for p in bmap.problems:
            parts.append(Text(f"  {one_line(str(p))}", style="red" if p.severity == "error" else "yellow"))
    else:
        parts.append(Text("fsck: no findings", style="green"))
    return Group(*parts)
