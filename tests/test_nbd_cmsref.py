"""The reference (cmsfs-fuse in s390x emulation) reads a CMS disk that fsproto served over NBD.

fsproto writes files into a served minidisk through ``nbd+unix://``; ``qemu-img convert`` copies
the served export (the harness attaches image files, so this is the converted-copy route the
issue allows); the reference lists and reads the copy exactly as fsproto reads the original.
One guest boot (~5 s under TCG)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from fsproto.errors import HarnessSetupError
from fsproto.testing import cmsref
from fsproto.testing.cmsref.compare import diff_views, fsproto_view
from nbd_helpers import Served, fsproto, wait_no_helpers

pytestmark = [pytest.mark.reference, pytest.mark.timeout(600)]


def test_reference_reads_a_cms_disk_written_and_served_over_nbd(tmp_path: Path, utc: Any) -> None:
    try:
        cmsref.prepare()
    except HarnessSetupError as e:
        pytest.fail(f"cmsref prepare: {e}", pytrace=False)
    img = tmp_path / "cms.img"
    fsproto("mkfs", "--format", "cms", "--block-size", "4096", "--label", "NBDREF", "--size", "8M", str(img),
            check=True)
    text = tmp_path / "PROFILE.EXEC"
    text.write_text("/* written over NBD */\n" + "".join(f"SAY 'LINE {i}'\n" for i in range(200)))
    data = tmp_path / "BLOB.DATA"
    data.write_bytes(bytes(range(256)) * 300)
    copy = tmp_path / "served-copy.img"
    with Served(str(img)) as srv:
        fsproto("put", "--text", "--recfm", "V", srv.uri, str(text), check=True)
        fsproto("put", "--recfm", "F", "--lrecl", "80", srv.uri, str(data), check=True)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, str(copy)], check=True, timeout=60)
        assert srv.stop() == 0
    assert copy.read_bytes() == img.read_bytes()
    view = cmsref.inspect(copy)
    assert view["errors"] == [] and view["daemon_exit"] == {"a": 0, "b": 0}
    assert [f["path"] for f in view["files"]] == ["PROFILE.EXEC", "BLOB.DATA"]
    mine, _extras = fsproto_view(img)
    assert diff_views(mine, view["files"]) == []
    assert wait_no_helpers(str(tmp_path)) == []
