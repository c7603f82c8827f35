"""Seed corpus: small images made by the format's own mkfs (empty and with a few files), plus
the first ``max_len`` bytes of the shared images (``*.img``, ``*.img.xz``).

MBR/GPT seeds are tables built by the project's own builders; NVMe seeds are a good and a
failed completion entry followed by an Identify page.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from pathlib import Path

from fsproto.blockdev.memory import MemoryDevice
from fsproto.errors import FsprotoError

SHARED_DIRS = ("/work/shared/images/cms", "/work/shared/images")


def _formatted(name: str, size: int) -> list[bytes]:
    from fsproto.formats import get

    fmt = get(name)
    out = []
    for files in (0, 3):
        dev = MemoryDevice(num_blocks=size // 512, block_size=512)
        try:
            fmt.mkfs(dev)
            fs = fmt.open(dev)
            for i in range(files):
                fs.create(f"/SEED{i}.DAT")
                fs.write(f"/SEED{i}.DAT", 0, bytes(range(256)) * (i + 1))
            fs.close()
        except (FsprotoError, TypeError):
            continue
        out.append(dev.read(0, dev.num_blocks))
    return out


def _shared(max_len: int, dirs: tuple[str, ...]) -> list[bytes]:
    out = []
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for p in sorted(Path(d).iterdir()):
            try:
                if p.suffix == ".xz" and p.name.endswith(".img.xz"):
                    with lzma.open(p) as f:
                        raw = f.read(max_len)
                elif p.suffix == ".img":
                    with open(p, "rb") as f:
                        raw = f.read(max_len)
                else:
                    continue
            except (OSError, lzma.LZMAError):
                continue
            out.append(raw)  # a larger image contributes its first max_len bytes
    return out


def _tables() -> list[bytes]:
    from fsproto.blockdev.mbr import build_mbr

    mbr = build_mbr([(2048, 4096, 0x83, True), (8192, 8192, 0x05, False)])
    return [mbr + bytes(512 * 63)]


def _nvme() -> list[bytes]:
    ok = bytes(16)
    failed = (0).to_bytes(12, "little") + ((0x80 << 17) | (1 << 16) | 7).to_bytes(4, "little")
    page = bytearray(4096)
    page[25] = 1
    return [ok + bytes(page), failed + bytes(page)]


def build(target: str, corpus_dir: str, max_len: int, shared_dirs: tuple[str, ...] = SHARED_DIRS) -> int:
    """Write seeds for *target* into *corpus_dir* (named by SHA-1, like libFuzzer); returns how many."""
    os.makedirs(corpus_dir, exist_ok=True)
    if target in ("mbr", "gpt"):
        seeds = _tables()
    elif target == "nvme":
        seeds = _nvme()
    else:
        seeds = _formatted(target, min(max_len, 256 << 10)) + _shared(max_len, shared_dirs)
    for s in seeds:
        s = s[:max_len]
        with open(os.path.join(corpus_dir, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    return len(seeds)
