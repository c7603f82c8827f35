"""Everything the reference shows of a CMS disk, as a plain structure for tests to compare.

The guest side is ``cms_inspect`` in :mod:`fsproto.testing.cmsref.scripts`: two read-only
cmsfs-fuse mounts of the disk (binary, and ``-a`` text), then one ``stat``, ``getfattr`` per
attribute and ``sha256sum`` over all files of each (few execs: each costs ~10 ms under TCG).

Per file (keys named as in the manifests under ``../shared/images/cms/``):
``name``, ``type``, ``path`` (``NAME.TYPE``), ``slot`` (FST index from the order cmsfs-fuse lists the
directory in: DIRECTOR is 0 and ALLOCMAP 1, so user files start at 2), ``mode``, ``recfm``, ``lrecl`` (from ``user.file_mode``,
``user.record_format``, ``user.record_lrecl``), ``size_binary``, ``sha256_binary``,
``text`` (``size`` and ``sha256`` of the ``-a`` view), ``records``, ``date`` and ``mtime``,
``errors`` (what reading it printed).

``records`` is derived from two sizes the reference reports: in ``-a`` mode cmsfs-fuse's
``getattr`` adds one byte per record (the ``\\n``) to the binary size, and IBM-1047 <->
ISO-8859-1 maps byte to byte, so records = text size - binary size, exact even for binary
records that contain the newline byte.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Sequence

from fsproto.errors import HarnessError
from fsproto.testing.cmsref.guest import DEFAULT_TIMEOUT, Disk, run


def inspect_script(count: int) -> str:
    """The job that inspects ``$DISK0`` .. ``$DISK{count-1}`` (tags 0..count-1)."""
    return "".join(f'cms_inspect "$DISK{i}" {i}\n' for i in range(count))


def _text(files: dict[str, bytes], tag: str, name: str) -> str:
    return files.get(f"inspect-{tag}/{name}", b"").decode("latin-1")


def _getfattr(text: str) -> dict[str, str]:
    """``getfattr -n NAME`` output -> {file: value}."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# file: "):
            current = line[len("# file: ") :]
        elif current is not None and "=" in line:
            value = line.split("=", 1)[1]
            out[current] = value[1:-1] if value.startswith('"') and value.endswith('"') else value
    return out


def _stat(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in text.splitlines():
        parts = line.rsplit("|", 2)
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), int(parts[2]))
    return out


def _sha(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64:
            out[name] = digest
    return out


def parse_inspection(files: dict[str, bytes], tag: str | int) -> dict[str, Any]:
    """Turn the files ``cms_inspect DEV TAG`` wrote into the structure described above.

    Raises HarnessError when the guest wrote no inspection for *tag*.
    """
    tag = str(tag)
    if f"inspect-{tag}/order" not in files:
        raise HarnessError(f"the guest wrote no inspection for disk {tag}")
    order = [ln[2:] if ln.startswith("./") else ln for ln in _text(files, tag, "order").splitlines() if ln]
    stat_b, stat_a = _stat(_text(files, tag, "stat.b")), _stat(_text(files, tag, "stat.a"))
    sha_b, sha_a = _sha(_text(files, tag, "sha.b")), _sha(_text(files, tag, "sha.a"))
    attrs = {x: _getfattr(_text(files, tag, f"xattr.{x}")) for x in ("record_format", "record_lrecl", "file_mode")}
    errors = [ln for ln in _text(files, tag, "errors").splitlines() if ln.strip()]
    daemons = dict(ln.split() for ln in _text(files, tag, "daemons").splitlines() if len(ln.split()) == 2)
    out_files = []
    for slot, path in enumerate(order, start=2):  # FST index: DIRECTOR is 0, ALLOCMAP 1
        name, _dot, ftype = path.partition(".")
        size_b, mtime = stat_b.get(path, (None, None))
        size_a = stat_a.get(path, (None, None))[0]
        lrecl = attrs["record_lrecl"].get(path)
        out_files.append(
            {
                "path": path,
                "name": name,
                "type": ftype,
                "slot": slot,
                "mode": attrs["file_mode"].get(path),
                "recfm": attrs["record_format"].get(path),
                "lrecl": int(lrecl) if lrecl is not None and lrecl.isdigit() else None,
                "size_binary": size_b,
                "sha256_binary": sha_b.get(path),
                "text": {"size": size_a, "sha256": sha_a.get(path)},
                "records": size_a - size_b if size_a is not None and size_b is not None else None,
                "mtime": mtime,
                "date": None
                if mtime is None
                else _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                "errors": [e for e in errors if f"{path}:" in e or f"'{path}'" in e],
            }
        )
    statfs = _text(files, tag, "statfs").split()
    fs = dict(zip(("block_size", "total_blocks", "free_blocks", "total_files", "free_files"), map(int, statfs)))
    return {
        **fs,
        "files": out_files,
        "errors": errors,
        "daemon_exit": {k: int(v) for k, v in daemons.items() if v.lstrip("-").isdigit()},
    }


def inspect_many(
    images: Sequence[Path | str], *, timeout: float | None = None, cache: Path | None = None
) -> list[dict[str, Any]]:
    """:func:`inspect` of several images in one guest boot (each attached read-only).

    Raises what :func:`fsproto.testing.cmsref.run` raises, and HarnessError when the job fails.
    """
    disks = [Disk(Path(p), read_only=True) for p in images]
    if timeout is None:
        timeout = DEFAULT_TIMEOUT + 60.0 * len(disks)
    result = run(disks, inspect_script(len(disks)), timeout=timeout, cache=cache).check()
    return [parse_inspection(result.files, i) for i in range(len(disks))]


def inspect(image: Path | str, *, timeout: float | None = None, cache: Path | None = None) -> dict[str, Any]:
    """Everything the reference sees on *image* (attached read-only; never written).

    Raises UsageError, FormatError (no CMS label), HarnessSetupError (not prepared),
    ReferenceRefused, GuestError, HarnessError (the inspection job failed).
    """
    return inspect_many([image], timeout=timeout, cache=cache)[0]
