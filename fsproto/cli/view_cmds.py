"""CLI: ``fsproto map`` (a block map in the terminal or as a PNG) and ``fsproto explore`` (a
read-only Textual browser of the structures). Parsing only; actions in view_actions."""

from __future__ import annotations

from pathlib import Path

import click

from fsproto.cli import view_actions as actions
from fsproto.errors import EXIT_OK, HostFileError


@click.command("map")
@click.argument("device")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="Also write the map as a PNG image.")
@click.option("--file", "file_name", metavar="NAME", help="Highlight the blocks of this file.")
@click.option("--format", "fmt_name", default="auto", show_default=True, help="On-disk format (auto = detect).")
@click.option("--force", is_flag=True, help="Open a block device even if it looks in use.")
def map_cmd(device: str, png_path: str | None, file_name: str | None, fmt_name: str, force: bool) -> int:
    """Draw DEVICE's block map: every block coloured by role, a legend with counts, fsck's findings.

    Roles: label, allocation map, directory, pointer blocks by level, data by file, free, and
    the problems fsck's walk finds (claimed twice, leaked, unmarked, unreadable). Read-only.
    """
    with actions.open_map(device, fmt_name=fmt_name, force=force) as m:
        highlight = actions.resolve_owner(m.bmap, file_name) if file_name else None
        from rich.console import Console  # rich only when drawing: every command imports this module

        from fsproto.view.term import render

        console = Console(soft_wrap=False, highlight=False)
        console.print(render(m.bmap, width=console.width, highlight=highlight))
        if png_path:
            from fsproto.view.png import write_png

            try:
                write_png(m.bmap, png_path, highlight=highlight)
            except OSError as e:
                raise HostFileError(f"cannot write {png_path}: {e.strerror or e}") from None
            click.echo(f"wrote {Path(png_path)}", err=True)
    return EXIT_OK


@click.command("explore")
@click.argument("device")
@click.option("--format", "fmt_name", default="auto", show_default=True, help="On-disk format (auto = detect).")
@click.option("--force", is_flag=True, help="Open a block device even if it looks in use.")
def explore_cmd(device: str, fmt_name: str, force: bool) -> int:
    """Browse DEVICE's structures in a terminal app (read-only: it never writes).

    Left: the tree (CMS: label, directory, files, pointer levels, data blocks; FAT: boot sector,
    FATs, directories, cluster chains). Right: the selected block in hex with the fields of the
    selected structure named, their values beside them. Keys: arrows/enter to walk the tree,
    [ and ] to step through fields, f to follow a pointer, g to go to a block, / to search
    names, q to quit.
    """
    with actions.open_map(device, fmt_name=fmt_name, force=force) as m:
        from fsproto.view.explore import ExplorerApp

        ExplorerApp(m.bmap, m.fmt.outline(m.dev, m.bmap)).run()
    return EXIT_OK


def register(group: click.Group) -> None:
    for cmd in (map_cmd, explore_cmd):
        group.add_command(cmd)
