"""CLI: ``fsproto crashcheck``, the crash-state explorer for any registered format."""

from __future__ import annotations

import sys

import click

from fsproto.crash.states import ORDERS


@click.command("crashcheck")
@click.option("--format", "fmt_name", required=True, help="Registered format to test (cms, fat, a plugin...).")
@click.option("--workload", type=click.Path(dir_okay=False), default=None, help="Python file defining run(w) (see docs/crash.md).")
@click.option("--builtin", "builtin_name", default=None, help="Built-in workload: basic, many, enospc.")
@click.option("--orders", "order", type=click.Choice(ORDERS), default="prefix", show_default=True,
              help="prefix: in-order cuts and torn writes; epoch: any subset of the writes since the last flush; all: both.")
@click.option("--max-states", type=click.IntRange(1), default=2000, show_default=True, help="Check at most this many states (sampled with --seed past it).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, help="Worker processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling states.")
@click.option("--block-size", type=int, default=None, help="Passed to mkfs as block_size (CMS block, FAT cluster).")
@click.option("--many", type=click.IntRange(1), default=10_000, show_default=True, help="Files in the 'many' built-in.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="crashcheck-out", show_default=True,
              help="Where the trace and failing states (state-NNN.img + .writes, smallest first) go.")
def crashcheck_cmd(**kw: object) -> int:
    """Run a workload, rebuild every crash state from its write stream, and check each one.

    Each state gets the format's fsck (read-only, then --repair on a copy) and the workload's
    assertions: files written before a flush hold exactly that; others their old or new contents.
    Exit status 0 when every state passes, 4 when one loses data or cannot be repaired.
    """
    # Imported here, not at the top: every fsproto command imports this module at start-up.
    from rich.console import Console

    from fsproto.cli import crash_actions as actions

    console = Console()
    return actions.crashcheck(**kw, show_progress=sys.stderr.isatty(), console=console)  # type: ignore[arg-type]


def register(group: click.Group) -> None:
    group.add_command(crashcheck_cmd)
