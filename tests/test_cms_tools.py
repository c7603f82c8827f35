"""tools/make_images.py is deterministic and makes clean disks; tools/bench_cms.py runs."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from conftest import PROJECT_ROOT
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import ImageFile


def test_make_images_is_deterministic(tmp_path) -> None:
    outs = []
    for run in ("a", "b"):
        subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "make_images.py"), str(tmp_path / run),
                        "--only", "512,2048"], check=True, capture_output=True)
        outs.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / run).glob("*.img")})
    assert outs[0] == outs[1] and len(outs[0]) == 2
    with ImageFile(tmp_path / "a" / "edf512-sample.img") as dev:
        assert FORMAT.fsck(dev).problems == []
        fs = FORMAT.open(dev)
        assert fs.stat("/TREE.DATA").extra["levels"] == "3"  # several pointer levels
        text = FORMAT.open(dev, text=True).read("/PROFILE.EXEC", 0, 4096).decode()
        assert "[brackets] ^caret ¬not" in text


def test_bench_runs_small(tmp_path) -> None:
    r = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "bench_cms.py"), "--size-mib", "2",
                        "--dir", str(tmp_path)], check=True, capture_output=True, text=True)
    assert "x struct" in r.stdout and "ratio" in r.stdout
