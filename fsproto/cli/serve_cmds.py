"""CLI command: ``fsproto serve`` (parsing only; the action is in :mod:`fsproto.cli.serve_actions`)."""

from __future__ import annotations

import click


@click.command("serve")
@click.argument("device")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False), default=None,
              help="Listen on this unix socket. [default: a private one in a 0700 temp directory]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Listen on this TCP port instead.")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on with --port (0.0.0.0 for every interface).")
@click.option("--export", "export", default="", help="Export name clients ask for. [default: the default export, \"\"]")
@click.option("--read-only", "-r", is_flag=True, help="Serve read-only: clients cannot write.")
@click.option("--overlay", type=click.Path(dir_okay=False), default=None,
              help="Keep every client write in this copy-on-write sidecar; DEVICE stays untouched.")
@click.option("--fault", metavar="SPEC", default=None,
              help="Inject faults, e.g. cut-after-writes=20,after-cut=error (keys: cut-after-writes, "
                   "cut-after-blocks, torn-bytes, read-error, write-error, after-cut).")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Record every request to this trace file (read it with fsproto trace).")
@click.option("--partition", "-p", type=click.IntRange(min=1), default=None, help="Serve partition N (same as DEVICE@N).")
@click.option("--force", is_flag=True, help="Serve even if DEVICE is mounted, held or locked by another fsproto.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None,
              help="Keep nbdkit's messages in this file. [default: kept only to report a failure]")
@click.option("--verbose", is_flag=True, help="Let nbdkit log every connection and request (see --log).")
def serve_cmd(device: str, socket_path: str | None, port: int | None, bind: str, export: str, read_only: bool,
              overlay: str | None, fault: str | None, trace: str | None, partition: int | None, force: bool,
              log_path: str | None, verbose: bool) -> int:
    """Serve DEVICE over NBD (nbdkit) until Ctrl-C or SIGTERM, which flush the device first.

    DEVICE is anything fsproto opens: an image, IMAGE@N, a block device, a qcow2/VMDK/VHD(X)/VDI
    image, an nbd:// URI, an nvme:/ahci: controller. The device is locked as a mount locks it
    (one writer). Prints the URI clients connect to, e.g.
    `qemu-img convert nbd+unix:///?socket=... out.raw` or `fsproto ls nbd+unix:///?socket=...`.
    """
    from fsproto.cli.serve_actions import serve

    if partition is not None:
        device = f"{device}@{partition}"
    return serve(device, socket_path=socket_path, port=port, bind=bind, read_only=read_only, overlay=overlay,
                 fault=fault, trace=trace, force=force, export=export, verbose=verbose, log_path=log_path)


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(serve_cmd)
