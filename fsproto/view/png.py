"""The block map as a PNG (pillow): a title, a grid of square cells, the legend with counts.

:class:`PngLayout` says where every cell and legend swatch lies, so a test (or a caller) can
find the pixel of a unit. The legend is also stored as PNG text chunks (``fsproto:legend:N`` =
``#rrggbb words (count)``), readable without looking at the picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from fsproto.formats.blockmap import BlockMap
from fsproto.view.cells import Cell, cell_index, cells, hex_colour, legend_keys, rgb

MAX_CELLS = 16384
MARGIN = 10
TITLE_H = 22
SWATCH = 12
LEGEND_ROW = 18
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


@dataclass
class PngLayout:
    cols: int
    cell_px: int
    cells: list[Cell]
    grid_top: int = MARGIN + TITLE_H
    legend: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return -(-len(self.cells) // self.cols)

    @property
    def width(self) -> int:
        return 2 * MARGIN + self.cols * self.cell_px

    @property
    def legend_top(self) -> int:
        return self.grid_top + self.rows * self.cell_px + MARGIN

    @property
    def height(self) -> int:
        return self.legend_top + len(self.legend) * LEGEND_ROW + MARGIN

    def cell_box(self, i: int) -> tuple[int, int, int, int]:
        r, c = divmod(i, self.cols)
        x, y = MARGIN + c * self.cell_px, self.grid_top + r * self.cell_px
        return x, y, x + self.cell_px - 1, y + self.cell_px - 1

    def unit_centre(self, unit: int) -> tuple[int, int]:
        """The pixel at the centre of the cell that draws *unit*."""
        x0, y0, x1, y1 = self.cell_box(cell_index(self.cells, unit))
        return (x0 + x1) // 2, (y0 + y1) // 2

    def swatch_box(self, row: int) -> tuple[int, int, int, int]:
        y = self.legend_top + row * LEGEND_ROW
        return MARGIN, y, MARGIN + SWATCH - 1, y + SWATCH - 1


def layout(bmap: BlockMap, highlight: str | None = None) -> PngLayout:
    cell_list = cells(bmap, MAX_CELLS, highlight)
    cols = 64 if len(cell_list) <= 4096 else 128
    cell_px = 10 if cols == 64 else 6
    return PngLayout(cols, cell_px, cell_list, legend=legend_keys(bmap, highlight))


def write_png(bmap: BlockMap, path: str | Path, *, highlight: str | None = None) -> PngLayout:
    """Draw the map to *path*; returns the layout used. Raises OSError from the file system."""
    lay = layout(bmap, highlight)
    img = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    per = lay.cells[0].count if lay.cells else 1
    title = (f"{Path(bmap.device).name}: {bmap.format}, {bmap.count} {bmap.unit}s of {bmap.unit_size} B, "
             f"one cell = {per} {bmap.unit}{'s' if per > 1 else ''}")
    draw.text((MARGIN, MARGIN), title, fill=INK, font=font)
    gap = 1 if lay.cell_px >= 6 else 0  # a hair of background between cells keeps runs countable
    for i, c in enumerate(lay.cells):
        x0, y0, x1, y1 = lay.cell_box(i)
        draw.rectangle((x0, y0, x1 - gap, y1 - gap), fill=rgb(c.key))
    info = PngInfo()
    for row, (key, words, n) in enumerate(lay.legend):
        box = lay.swatch_box(row)
        draw.rectangle(box, fill=rgb(key), outline=INK)
        draw.text((box[2] + 8, box[1] - 1), f"{words}: {n} {bmap.unit}s", fill=INK, font=font)
        info.add_text(f"fsproto:legend:{row}", f"{hex_colour(key)} {words} ({n})")
    img.save(path, "PNG", pnginfo=info)
    return lay
