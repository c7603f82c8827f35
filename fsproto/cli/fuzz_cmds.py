"""CLI: ``fsproto fuzz``, coverage-guided fuzzing (atheris) of a format's parsers or of mbr/gpt/nvme."""

from __future__ import annotations

import sys

import click


@click.command("fuzz")
@click.option("--format", "target", required=True, help="A registered format (cms, fat, a plugin) or mbr, gpt, nvme.")
@click.option("--seconds", type=int, default=60, show_default=True, help="How long to fuzz.")
@click.option("--corpus", type=click.Path(file_okay=False), default=None,
              help="Corpus directory (seeded from mkfs'd and shared images when empty; grows as coverage does).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="fuzz-out", show_default=True,
              help="Where crash-/timeout-/oom- files are written.")
@click.option("--max-len", type=click.IntRange(64), default=256 << 10, show_default=True, help="Largest image (bytes).")
@click.option("--rss-mb", type=click.IntRange(64), default=1024, show_default=True, help="Memory limit per case (MiB).")
@click.option("--case-timeout", type=click.IntRange(1), default=10, show_default=True, help="Time limit per case (s).")
def fuzz_cmd(**kw: object) -> int:
    """Fuzz the probe, mount-time parse, directory walk, file reads and fsck of a format.

    Any exception that is not a typed fsproto error, a case over the time limit or over the
    memory limit is a crash: its input is saved as OUT/crash-<sha1> (replay it with
    `python -m fsproto.fuzz.harness FORMAT OUT/crash-...`). Exit status 4 when one was found.
    """
    # Imported here, not at the top: every fsproto command imports this module at start-up.
    from rich.console import Console

    from fsproto.cli import fuzz_actions as actions

    return actions.fuzz(**kw, show_progress=sys.stderr.isatty(), console=Console())  # type: ignore[arg-type]


def register(group: click.Group) -> None:
    group.add_command(fuzz_cmd)
