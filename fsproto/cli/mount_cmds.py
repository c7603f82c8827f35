"""CLI commands: ``fsproto mount`` and ``fsproto umount`` (parsing only; actions in fsproto.mount.daemon)."""

from __future__ import annotations

import click

from fsproto.errors import UsageError
from fsproto.mount.options import KNOWN, MountOptions, parse_options


@click.command("mount")
@click.argument("device")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--format", "format_name", default="auto", show_default=True, help="Format name, or auto to detect.")
@click.option("--ro", "read_only", is_flag=True, help="Mount read-only: writes fail with EROFS.")
@click.option("--text/--binary", "text", default=None, help="Text view (EBCDIC records <-> UTF-8 lines) or raw records. [default: the format's]")
@click.option("--codepage", type=click.Choice(["cp1047", "cp037"]), default=None, help="EBCDIC code page of the text view. [default: the format's]")
@click.option("--foreground", "-f", is_flag=True, help="Serve in this process (Ctrl-C unmounts) instead of a daemon.")
@click.option("--debug", is_flag=True, help="Log every request error, not only failures.")
@click.option("--log", "log_target", default=None, metavar="FILE|syslog|-", help="Where the daemon logs. [default: stderr in the foreground, else /var/log/fsproto-mount.log or the temp dir]")
@click.option("-o", "option_list", multiple=True, metavar="OPT[,OPT...]",
              help=f"Mount options: {', '.join(KNOWN)}. allow_other (share the mount with every user) implies "
                   "default_permissions: the kernel then checks each access against the owner, group and mode "
                   "stat shows (uid=, gid=, and the bits umask=/fmask=/dmask= clear, octal, as for vfat); "
                   "no_default_permissions turns that off (every user may then write every file).")
@click.pass_context
def mount_cmd(
    ctx: click.Context,
    device: str,
    mountpoint: str,
    format_name: str,
    read_only: bool,
    text: bool | None,
    codepage: str | None,
    foreground: bool,
    debug: bool,
    log_target: str | None,
    option_list: tuple[str, ...],
) -> int:
    """Mount the filesystem on DEVICE (an image or block device) at MOUNTPOINT through FUSE.

    Runs in the background once the mount is ready; errors (a corrupt image, a bad mount
    point) are reported before that. `fsproto umount MOUNTPOINT` (or SIGTERM to the daemon)
    unmounts after flushing everything to the device. By default `mount` and `df` show the
    device path as the source and `fuse.<format>` as the type (-o fsname=, subtype=).

    The device is locked while mounted: offline writers (put, rm, mv, fsck --repair,
    write-blocks, overlay commit, mkfs) and readers of a read-write mount are refused unless
    --force. A non-root user can mount an image they own on a directory they own (through
    fusermount3); -o allow_other then also needs `user_allow_other` in /etc/fuse.conf.
    """
    from fsproto.mount.daemon import mount_device

    options = parse_options(option_list, MountOptions())
    if read_only:
        options = options.with_(read_only=True)
    format_options: dict[str, object] = {}
    if text is not None:
        format_options["text"] = text
        if text:
            if options.writeback_cache:
                raise UsageError("-o writeback_cache needs a byte-exact view; it cannot be used with --text")
            # A text view does not read back byte-for-byte what was written (records are
            # re-encoded), so the kernel must not serve file data from its page cache.
            options = options.with_(direct_io=True, keep_cache=False, writeback_cache=False)
    if codepage is not None:
        format_options["codepage"] = codepage
    debug = debug or bool((ctx.obj or {}).get("debug"))
    return mount_device(
        device,
        mountpoint,
        format_name=format_name,
        format_options=format_options,
        options=options,
        foreground=foreground,
        log_target=log_target,
        debug=debug,
    )


@click.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--lazy", "-z", is_flag=True, help="Detach now even if busy; the daemon exits when the last user goes.")
def umount_cmd(mountpoint: str, lazy: bool) -> int:
    """Unmount MOUNTPOINT and wait until the daemon has flushed everything to the device."""
    from fsproto.mount.daemon import umount

    umount(mountpoint, lazy=lazy)
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(mount_cmd)
    group.add_command(umount_cmd)
