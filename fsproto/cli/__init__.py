"""The ``fsproto`` command line: parsing lives in the ``*_cmds`` modules, actions below them.

``cli(argv) -> int`` runs one command in-process (tests call it); ``main()`` is the console
entry point. Every known error prints one line (``--debug`` adds the traceback) and maps to
an exit status from :mod:`fsproto.errors`.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Sequence

import click

from fsproto import __version__
from fsproto.cli.common import one_line
from fsproto.errors import EXIT_OPERATIONAL, EXIT_USAGE, FsprotoError, exit_status_for


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fsproto")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def group(ctx: click.Context, debug: bool) -> None:
    """fsproto: prototype filesystems in user space.

    Read and write disk images and block devices, parse on-disk formats (CMS EDF minidisks),
    mount them through FUSE, and poke storage controller registers during bring-up.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    # Each module adds its commands to the group; one module per area keeps them apart.
    from fsproto.cli import (
        crash_cmds, demo_cmds, device_cmds, fs_cmds, fuzz_cmds, hw_cmds, lab_cmds, mount_cmds, serve_cmds, view_cmds,
    )

    for module in (device_cmds, fs_cmds, view_cmds, mount_cmds, serve_cmds, hw_cmds, demo_cmds, lab_cmds,
                   crash_cmds, fuzz_cmds):
        module.register(group)


_register_commands()


def cli(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = group.main(args=args, prog_name="fsproto", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("fsproto: aborted", err=True)
        return EXIT_OPERATIONAL
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE
    except FsprotoError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"fsproto: error: {one_line(str(e))}", err=True)
        return exit_status_for(e)
    except KeyboardInterrupt:
        click.echo("fsproto: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as e:
        # click ends a closed stdout pipe itself with sys.exit(1), even outside standalone
        # mode; cli() promises an int to in-process callers, so the status comes back as one.
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_OPERATIONAL)
    return rv if isinstance(rv, int) else 0


def main() -> None:
    sys.exit(cli())
