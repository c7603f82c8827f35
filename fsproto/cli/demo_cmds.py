"""CLI: ``fsproto demo`` -- make a CMS minidisk, fill it, mount it through FUSE, list it, check it.

The README's first command runs this, so it exercises the main path end to end on an embedded
default: a fresh 8 MiB minidisk in a temporary directory (or ``--dir``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from fsproto.cli import fs_actions as actions
from fsproto.errors import EXIT_OK, FsprotoError

PROFILE_EXEC = """\
/* PROFILE EXEC: written by the fsproto demo */
'CP SET PF12 RETRIEVE'
'ACCESS 191 A'
SAY 'fsproto was here'
"""


def _step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


def _run(argv: list[str]) -> None:
    click.echo("$ " + " ".join(argv))
    subprocess.run(argv, check=True)


def _fsproto() -> list[str]:
    return [sys.executable, "-m", "fsproto"]


@click.command("demo")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo image here instead of a temporary directory.")
@click.option("--block-size", type=click.Choice(["512", "1024", "2048", "4096"]), default="4096", show_default=True)
@click.option("--no-mount", is_flag=True, help="Skip the FUSE part (offline tools only).")
def demo_cmd(workdir: Path | None, block_size: str, no_mount: bool) -> int:
    """Make a CMS minidisk, put files on it, mount it through FUSE, list it, and fsck it."""
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="fsproto-demo-")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "demo.cms"
    mnt = workdir / "mnt"
    try:
        if image.exists():
            image.unlink()
        _step(f"mkfs: an 8 MiB CMS minidisk with {block_size}-byte blocks")
        _run(_fsproto() + ["mkfs", "--format", "cms", "--block-size", block_size, "--label", "DEMO01",
                           "--size", "8M", str(image)])
        _run(_fsproto() + ["info", str(image)])

        _step("put: a text file (EBCDIC, one record per line) and a binary file")
        src = workdir / "src"
        src.mkdir(exist_ok=True)
        (src / "PROFILE.EXEC").write_text(PROFILE_EXEC)
        (src / "RANDOM.BIN").write_bytes(os.urandom(300_000))
        _run(_fsproto() + ["put", "--text", "--recfm", "V", str(image), str(src / "PROFILE.EXEC")])
        _run(_fsproto() + ["put", "--recfm", "F", "--lrecl", "4096", str(image), str(src / "RANDOM.BIN")])
        _run(_fsproto() + ["ls", "-l", str(image)])

        if not no_mount:
            _step("mount: the minidisk through FUSE, in text mode")
            mnt.mkdir(exist_ok=True)
            _run(_fsproto() + ["mount", "--text", str(image), str(mnt)])
            try:
                deadline = time.monotonic() + 10
                while not os.path.ismount(mnt) and time.monotonic() < deadline:
                    time.sleep(0.05)
                _run(["ls", "-l", str(mnt)])
                _run(["cat", str(mnt / "PROFILE.EXEC")])
                _run(["df", "-h", str(mnt)])
            finally:
                _run(_fsproto() + ["umount", str(mnt)])

        _step("fsck: check every invariant of the format")
        _run(_fsproto() + ["fsck", str(image)])
        click.secho("demo finished: all steps succeeded", fg="green")
    except subprocess.CalledProcessError as e:
        raise DemoFailed(f"demo step failed (exit {e.returncode}): {' '.join(map(str, e.cmd))}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return EXIT_OK


class DemoFailed(FsprotoError):
    """A demo step exited non-zero."""


def register(group: click.Group) -> None:
    group.add_command(demo_cmd)
