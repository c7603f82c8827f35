"""Fuzz targets: bytes in, the parser under test exercised, only typed errors allowed out.

Every input becomes a read-only MemoryDevice (padded to whole 512-byte sectors, bounded by
the harness's ``-max_len``); reads and walks are bounded so a well-formed but huge image cannot
stand in for a hang.
"""

from __future__ import annotations

from typing import Callable

from fsproto.blockdev.memory import MemoryDevice
from fsproto.errors import FsprotoError
from fsproto.formats.base import Format

SECTOR = 512
MAX_ENTRIES = 2000  # directory entries visited per case
MAX_READ = 1 << 20  # file bytes read per case


def device(data: bytes) -> MemoryDevice:
    pad = (-len(data)) % SECTOR
    return MemoryDevice.from_bytes(data + bytes(pad), SECTOR, name="fuzz", read_only=True)


def _walk(fs, budget: list[int]) -> None:
    stack = ["/"]
    while stack and budget[0] > 0:
        path = stack.pop()
        for st in fs.listdir(path):
            budget[0] -= 1
            if budget[0] <= 0:
                return
            child = path.rstrip("/") + "/" + st.name
            if st.is_dir:
                if st.name not in (".", ".."):
                    stack.append(child)
                continue
            fs.stat(child)
            fs.read(child, 0, min(st.size, MAX_READ // 8))
            for name in fs.listxattr(child)[:8]:
                try:
                    fs.getxattr(child, name)
                except FsprotoError:
                    pass


def format_target(fmt: Format) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        dev = device(data)
        fmt.probe(dev)  # must never raise, whatever the bytes
        try:
            fs = fmt.open(dev)
            try:
                _walk(fs, [MAX_ENTRIES])
                fs.statfs()
            finally:
                fs.close()
        except FsprotoError:
            pass
        try:
            fmt.fsck(dev)
        except FsprotoError:
            pass

    return run


def mbr_target(data: bytes) -> None:
    from fsproto.blockdev.mbr import parse_mbr

    try:
        parse_mbr(device(data))
    except FsprotoError:
        pass


def gpt_target(data: bytes) -> None:
    from fsproto.blockdev.gpt import parse_gpt

    try:
        parse_gpt(device(data))
    except FsprotoError:
        pass


def nvme_target(data: bytes) -> None:
    from fsproto.hw.nvme.commands import Completion, IdentifyController, IdentifyNamespace, status_error

    raw = data[:16].ljust(16, b"\0")
    cqe = Completion.parse(raw)
    cqe.describe()
    if not cqe.ok:
        status_error(cqe, opcode=data[16] if len(data) > 16 else 0, admin=len(data) % 2 == 0, device="fuzz")
    page = data[16 : 16 + 4096].ljust(4096, b"\0")
    try:
        IdentifyController.parse(page)
        IdentifyNamespace.parse(page)
    except FsprotoError:
        pass


EXTRA_TARGETS: dict[str, Callable[[bytes], None]] = {"mbr": mbr_target, "gpt": gpt_target, "nvme": nvme_target}


def target(name: str) -> Callable[[bytes], None]:
    """The target for a registered format or one of mbr/gpt/nvme. Raises UsageError."""
    if name in EXTRA_TARGETS:
        return EXTRA_TARGETS[name]
    from fsproto.formats import get

    return format_target(get(name))
