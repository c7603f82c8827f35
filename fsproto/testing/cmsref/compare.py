"""fsproto's own view of a CMS image in the structure :func:`~.inspect.inspect` returns, and a
readable comparison of two such views.

FST dates are local time on both sides: the guest runs in UTC, so compare with ``TZ=UTC``
on the host (the tests set it).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

KEYS = ("path", "slot", "mode", "recfm", "lrecl", "records", "size_binary", "sha256_binary", "text", "date")


def fsproto_view(image: Path | str) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Every file as fsproto reads it (binary and text views), and each file's FST extras.

    Raises what fsproto's CMS format raises (FormatError, UnknownFormat...).
    """
    from fsproto.formats.cms import FORMAT  # imported late: the harness must load without it
    from fsproto.rawdev import ImageFile

    out, extras = [], {}
    with ImageFile(image, block_size=512) as dev:
        fs = FORMAT.open(dev)
        tfs = FORMAT.open(dev, text=True)
        try:
            for slot, st in enumerate(fs.listdir("/"), start=2):
                path = "/" + st.name
                binary = fs.read(path, 0, st.size)
                # fsproto's text view is UTF-8; the reference's -a view ISO-8859-1
                text = tfs.read(path, 0, tfs.stat(path).size).decode("utf-8").encode("latin-1")
                name, _dot, ftype = st.name.partition(".")
                date = _dt.datetime.fromtimestamp(st.mtime_ns // 10**9, _dt.timezone.utc)
                out.append({
                    "path": st.name, "name": name, "type": ftype, "slot": slot,
                    "mode": fs.getxattr(path, "user.file_mode").decode(),
                    "recfm": fs.getxattr(path, "user.record_format").decode(),
                    "lrecl": int(fs.getxattr(path, "user.record_lrecl")),
                    "records": int(st.extra["records"]), "size_binary": len(binary),
                    "sha256_binary": hashlib.sha256(binary).hexdigest(),
                    "text": {"size": len(text), "sha256": hashlib.sha256(text).hexdigest()},
                    "date": date.strftime("%Y-%m-%d %H:%M:%S"),
                    # code page tables disagree on these two (NEL/LF): see docs/cms-reference.md
                    "newline_bytes": b"\x15" in binary or b"\x25" in binary,
                })
                extras[st.name] = dict(st.extra)
        finally:
            tfs.close()
            fs.close()
    return out, extras


def diff_views(seen: list[dict[str, Any]], meant: list[dict[str, Any]], *, text_size_only: set[str] = frozenset()) -> list[str]:
    """Differences between two views, one line per file and field (empty when equal).

    For the paths in *text_size_only* the text views are compared by size only.
    """
    out = []
    if [f["path"] for f in seen] != [f["path"] for f in meant]:
        out.append(f"order: {[f['path'] for f in seen]} != {[f['path'] for f in meant]}")
    for a, b in zip(seen, meant):
        for k in KEYS:
            va, vb = a[k], b[k]
            if k == "text" and a["path"] in text_size_only:
                va, vb = va["size"], vb["size"]
            if va != vb:
                out.append(f"{a['path']}: {k}: {va} != {vb}")
    return out
