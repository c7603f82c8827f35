"""CLI: offline filesystem verbs, generic over formats (ls, cat, get, put, rm, mv, dump, fsck, mkfs)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
from fsproto.cli import fs_actions as actions
from fsproto.cli import render
from fsproto.cli.common import one_line, progress_bar
from fsproto.errors import EXIT_OK, UsageError
from fsproto.formats.base import FsckReport
from fsproto.vfs import FileStat

# Options shared by every verb that opens a filesystem.
_format_option = click.option(
    "--format", "fmt_name", default="auto", show_default=True, help="On-disk format (auto = detect)."
)
_force_option = click.option(
    "--force", is_flag=True,
    help="Open the device even if it is mounted, held, or locked by another fsproto process (a mount, a writer).",
)
_read_force_option = click.option(
    "--force", is_flag=True,
    help="Read even while another process writes the device (the view may be inconsistent).",
)


def _view_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--codepage", default=None, help="Text code page (CMS: cp1047 default, cp037, ...)."
    )(f)
    f = click.option(
        "--text/--binary", "text", default=None, help="Text view (EBCDIC->UTF-8, records->lines) or raw records."
    )(f)
    return f


def _view(text: bool | None, codepage: str | None) -> dict[str, Any]:
    return {"text": text, "codepage": codepage}


def _show_progress() -> bool:
    return sys.stderr.isatty()


_json_option = click.option("--json", "as_json", is_flag=True,
                            help="JSON instead of a table (ls: one object per line).")


def _modified(mtime_ns: int, cache: dict[int, str]) -> str:
    """Local time as the table prints it; one strftime per distinct second (listings share dates)."""
    second = mtime_ns // 1_000_000_000
    text = cache.get(second)
    if text is None:
        text = cache[second] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    return text


def ls_record(st: FileStat, cache: dict[int, str]) -> dict[str, Any]:
    """One entry as ``ls --json`` prints it: the table's columns plus the rest of the stat."""
    return {"name": st.name, "is_dir": st.is_dir, "size": st.size, "modified": _modified(st.mtime_ns, cache),
            "mtime_ns": st.mtime_ns, "alloc_bytes": st.alloc_bytes, "perm": f"{st.mode:04o}", "nlink": st.nlink,
            "extra": dict(st.extra)}


@click.command("ls")
@click.argument("device")
@click.argument("path", default="/")
@click.option("-l", "long", is_flag=True, help="Long listing: size, date and format attributes.")
@_json_option
@_format_option
@_view_options
@_read_force_option
def ls_cmd(device: str, path: str, long: bool, as_json: bool, fmt_name: str, text: bool | None,
           codepage: str | None, force: bool) -> int:
    """List the files of DEVICE (an image, a block device, or IMAGE@N for a partition)."""
    with actions.open_fs(device, fmt_name=fmt_name, force=force, **_view(text, codepage)) as s:
        entries = actions.list_entries(s.fs, actions.as_path(path))
    cache: dict[int, str] = {}
    if as_json:
        render.write_lines(render.json_line(ls_record(st, cache)) for st in entries)
        return EXIT_OK
    if not long:  # names come from the image: one line each, control characters escaped
        render.write_lines(one_line(st.name) + ("/" if st.is_dir else "") for st in entries)
        return EXIT_OK
    extra_keys: dict[str, None] = {}
    for st in entries:
        for k in st.extra:
            extra_keys.setdefault(k, None)
    headers = ["name", *extra_keys, "size", "modified"]
    rows = [[one_line(st.name) + ("/" if st.is_dir else ""), *(one_line(st.extra.get(k, "")) for k in extra_keys),
             str(st.size), _modified(st.mtime_ns, cache)] for st in entries]
    render.write_lines(render.table_lines(headers, rows, right=range(1, len(headers) - 1),
                                          bold_header=render.is_terminal()))
    return EXIT_OK


@click.command("cat")
@click.argument("device")
@click.argument("paths", nargs=-1, required=True)
@_format_option
@_view_options
@_read_force_option
def cat_cmd(device: str, paths: tuple[str, ...], fmt_name: str, text: bool | None, codepage: str | None,
            force: bool) -> int:
    """Write files of DEVICE to standard output."""
    with actions.open_fs(device, fmt_name=fmt_name, force=force, **_view(text, codepage)) as s:
        out = sys.stdout.buffer
        for p in paths:
            actions.cat_file(s.fs, actions.as_path(p), out)
        out.flush()
    return EXIT_OK


@click.command("get")
@click.argument("device")
@click.argument("paths", nargs=-1)
@click.option("-o", "--output", "dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory to extract into.")
@_format_option
@_view_options
@_read_force_option
def get_cmd(device: str, paths: tuple[str, ...], dest: Path, fmt_name: str, text: bool | None,
            codepage: str | None, force: bool) -> int:
    """Extract files (all of them when none is named) from DEVICE into a directory."""
    with actions.open_fs(device, fmt_name=fmt_name, force=force, **_view(text, codepage)) as s:
        with progress_bar("extracting", enabled=_show_progress()) as progress:
            written = actions.get_files(s.fs, [actions.as_path(p) for p in paths], dest, progress=progress)
    click.echo(f"extracted {len(written)} file(s) to {dest}", err=True)
    return EXIT_OK


def _parse_xattrs(pairs: tuple[str, ...], recfm: str | None, lrecl: int | None, mode: str | None) -> dict[str, bytes]:
    xattrs: dict[str, bytes] = {}
    # --recfm/--lrecl/--mode are shorthands for the attribute names cmsfs-fuse scripts use.
    if recfm:
        xattrs["user.record_format"] = recfm.upper().encode()
    if lrecl is not None:
        xattrs["user.record_lrecl"] = str(lrecl).encode()
    if mode:
        xattrs["user.file_mode"] = mode.upper().encode()
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--xattr wants NAME=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        xattrs[k] = v.encode()
    return xattrs


@click.command("put")
@click.argument("device")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--as", "names", multiple=True, help="Name on the device (one source only).")
@click.option("--recfm", type=click.Choice(["F", "V", "f", "v"]), help="CMS record format for new files.")
@click.option("--lrecl", type=int, help="CMS record length for new files.")
@click.option("--mode", help="CMS file mode for new files, e.g. A1.")
@click.option("--xattr", "xattr_pairs", multiple=True, metavar="NAME=VALUE", help="Set an attribute before writing.")
@click.option("--replace", is_flag=True, help="Overwrite files that exist.")
@_format_option
@_force_option
@_view_options
def put_cmd(device: str, sources: tuple[Path, ...], names: tuple[str, ...], recfm: str | None, lrecl: int | None,
            mode: str | None, xattr_pairs: tuple[str, ...], replace: bool, fmt_name: str, force: bool,
            text: bool | None, codepage: str | None) -> int:
    """Copy host files into DEVICE."""
    xattrs = _parse_xattrs(xattr_pairs, recfm, lrecl, mode)
    with actions.open_fs(device, fmt_name=fmt_name, writable=True, force=force, **_view(text, codepage)) as s:
        with progress_bar("copying in", enabled=_show_progress()) as progress:
            written = actions.put_files(s.fs, list(sources), names=list(names) or None, xattrs=xattrs,
                                        replace=replace, progress=progress)
    for name in written:
        click.echo(name)
    return EXIT_OK


@click.command("rm")
@click.argument("device")
@click.argument("paths", nargs=-1, required=True)
@_format_option
@_force_option
def rm_cmd(device: str, paths: tuple[str, ...], fmt_name: str, force: bool) -> int:
    """Delete files from DEVICE."""
    with actions.open_fs(device, fmt_name=fmt_name, writable=True, force=force) as s:
        actions.remove_files(s.fs, [actions.as_path(p) for p in paths])
    return EXIT_OK


@click.command("mv")
@click.argument("device")
@click.argument("old")
@click.argument("new")
@_format_option
@_force_option
def mv_cmd(device: str, old: str, new: str, fmt_name: str, force: bool) -> int:
    """Rename a file on DEVICE (replacing NEW if it exists)."""
    with actions.open_fs(device, fmt_name=fmt_name, writable=True, force=force) as s:
        actions.rename_file(s.fs, actions.as_path(old), actions.as_path(new))
    return EXIT_OK


@click.command("dump")
@click.argument("device")
@click.argument("path", required=False)
@_json_option
@_format_option
@_read_force_option
def dump_cmd(device: str, path: str | None, as_json: bool, fmt_name: str, force: bool) -> int:
    """Decode the metadata of DEVICE (label, directory; pointer blocks of PATH when given)."""
    where = actions.as_path(path) if path else None
    if as_json:
        click.echo(render.json_line(actions.dump_metadata_data(device, fmt_name=fmt_name, path=where, force=force)))
    else:
        click.echo(actions.dump_metadata(device, fmt_name=fmt_name, path=where, force=force))
    return EXIT_OK


@click.command("fsck")
@click.argument("device")
@click.option("--repair", is_flag=True, help="Fix what is repairable (writes to DEVICE).")
@_json_option
@_format_option
@_force_option
def fsck_cmd(device: str, repair: bool, as_json: bool, fmt_name: str, force: bool) -> int:
    """Check DEVICE; exit status is e2fsck's bitmask (0 clean, 1 fixed, 4 left uncorrected, 8 error, 16 usage)."""
    with progress_bar("checking", enabled=_show_progress()) as progress:
        report = actions.check_filesystem(device, fmt_name=fmt_name, repair=repair, force=force, progress=progress)
    if as_json:
        click.echo(render.json_line(fsck_record(device, report)))
        return report.exit_status
    for problem in report.problems:
        click.echo(str(problem))
    errors = len(report.errors)
    fixed = sum(1 for p in report.problems if p.fixed)
    summary = ", ".join(f"{k} {v}" for k, v in report.summary.items())
    verdict = "clean" if report.clean else "NOT clean"
    click.echo(f"{device}: {verdict}: {errors} error(s), {fixed} fixed" + (f"; {summary}" if summary else ""))
    return report.exit_status


def fsck_record(device: str, report: FsckReport) -> dict[str, Any]:
    """``fsck --json``: the verdict line's figures, the summary and every problem."""
    return {"device": device, "clean": report.clean, "exit_status": report.exit_status,
            "errors": len(report.errors), "fixed": sum(1 for p in report.problems if p.fixed),
            "summary": dict(report.summary),
            "problems": [{"severity": p.severity, "code": p.code, "message": p.message, "fixed": p.fixed}
                         for p in report.problems]}


@click.command("mkfs")
@click.argument("device")
@click.option("--format", "fmt_name", required=True, help="Format to create (e.g. cms).")
@click.option("--block-size", type=int, help="Filesystem block size (CMS: 512, 1024, 2048, 4096).")
@click.option("--label", help="Volume label (CMS: up to 6 characters).")
@click.option("--size", help="Create DEVICE as an image of this size first (e.g. 100M).")
@click.option("--fat", "fat_type", type=click.Choice(["12", "16", "32"]), help="FAT type (fat format; default by size).")
@_force_option
def mkfs_cmd(device: str, fmt_name: str, block_size: int | None, label: str | None, size: str | None,
             fat_type: str | None, force: bool) -> int:
    """Create a new, empty filesystem on DEVICE (an image is created when --size is given)."""
    nbytes = actions.parse_size(size) if size else None
    with progress_bar("formatting", enabled=_show_progress()) as progress:
        actions.make_filesystem(device, fmt_name=fmt_name, size=nbytes, force=force, progress=progress,
                                block_size=block_size, label=label, fat=int(fat_type) if fat_type else None)
    click.echo(f"{device}: formatted as {fmt_name}", err=True)
    return EXIT_OK


def register(group: click.Group) -> None:
    for cmd in (ls_cmd, cat_cmd, get_cmd, put_cmd, rm_cmd, mv_cmd, dump_cmd, fsck_cmd, mkfs_cmd):
        group.add_command(cmd)
