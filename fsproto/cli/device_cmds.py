"""CLI commands for block devices: info, hexdump, trace, write-blocks, overlay.

DEVICE is an image path, a block-device node, or ``PATH@N`` for partition N (or
``--partition N``). The actions are in :mod:`fsproto.cli.device_actions`.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from fsproto.cli import device_actions as actions

DEVICE_HELP = "an image file, a block device (/dev/loop0), or IMAGE@N for partition N"


def _device_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--force", is_flag=True, help="Open a block device even if it is mounted or held.")(f)
    f = click.option("--partition", "-p", type=click.IntRange(min=1), default=None,
                     help="Partition number (same as DEVICE@N).")(f)
    return f


_block_size_option = click.option(
    "--block-size", "-b", type=click.IntRange(min=1), default=None,
    help="Present blocks of this size (default: the device's own sector size).",
)


@click.command("info")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the text.")
@_device_options
def info_cmd(device: str, as_json: bool, partition: int | None, force: bool) -> int:
    """Show the size, sector size and partition table of DEVICE.

    DEVICE is an image file, a block device (/dev/loop0), or IMAGE@N for partition N.
    """
    return actions.info(device, partition=partition, force=force, as_json=as_json)


@click.command("hexdump")
@click.argument("device")
@click.option("--lba", type=int, default=0, show_default=True, help="First block to dump.")
@click.option("--count", "-n", type=int, default=1, show_default=True, help="Number of blocks.")
@_block_size_option
@_device_options
def hexdump_cmd(device: str, lba: int, count: int, block_size: int | None, partition: int | None, force: bool) -> int:
    """Dump COUNT blocks of DEVICE from LBA in `hexdump -C` format.

    Offsets are bytes from the start of DEVICE (of the partition, for IMAGE@N).
    """
    return actions.hexdump(device, lba=lba, count=count, partition=partition, block_size=block_size, force=force)


@click.command("trace")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--summary", "-s", is_flag=True, help="Totals per operation instead of every record.")
def trace_cmd(file: str, summary: bool) -> int:
    """Print the I/O trace FILE recorded by a TracingDevice (or --trace), or summarise it."""
    return actions.trace(file, summary=summary)


@click.command("write-blocks")
@click.argument("device")
@click.option("--lba", type=int, required=True, help="First block to write.")
@click.option("--input", "-i", "source", type=click.File("rb"), default="-", show_default=True,
              help="File with the bytes to write (a whole number of blocks); - for stdin.")
@click.option("--writable", "-w", is_flag=True, help="Really open DEVICE for writing (it is read-only otherwise).")
@click.option("--overlay", type=click.Path(dir_okay=False), default=None,
              help="Keep the write in this copy-on-write sidecar instead of DEVICE.")
@_block_size_option
@_device_options
def write_blocks_cmd(device: str, lba: int, source: Any, writable: bool, overlay: str | None,
                     block_size: int | None, partition: int | None, force: bool) -> int:
    """Write raw blocks to DEVICE at LBA (needs --writable; with --overlay DEVICE stays untouched)."""
    return actions.write_blocks(device, lba=lba, source=source, partition=partition, block_size=block_size,
                                writable=writable, overlay=overlay, force=force)


@click.group("overlay")
def overlay_group() -> None:
    """Commit or discard a copy-on-write overlay sidecar (made with write-blocks --overlay)."""


@overlay_group.command("commit")
@click.argument("device")
@click.argument("sidecar", type=click.Path(dir_okay=False))
@_block_size_option
@_device_options
def overlay_commit_cmd(device: str, sidecar: str, block_size: int | None, partition: int | None, force: bool) -> int:
    """Write the blocks held in SIDECAR to DEVICE, then empty SIDECAR."""
    return actions.overlay_apply(device, sidecar, commit=True, partition=partition, block_size=block_size, force=force)


@overlay_group.command("discard")
@click.argument("device")
@click.argument("sidecar", type=click.Path(dir_okay=False))
@_block_size_option
@_device_options
def overlay_discard_cmd(device: str, sidecar: str, block_size: int | None, partition: int | None, force: bool) -> int:
    """Forget the blocks held in SIDECAR (DEVICE is not touched)."""
    return actions.overlay_apply(device, sidecar, commit=False, partition=partition, block_size=block_size, force=force)


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    for cmd in (info_cmd, hexdump_cmd, trace_cmd, write_blocks_cmd, overlay_group):
        group.add_command(cmd)
