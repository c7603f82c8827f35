"""mkfs: the CMS FORMAT command outside z/VM (CKD-style layout, as shared/specs/cms-edf.md).

Layout written: blocks 1-2 reserved (zeroed), the label at byte 2 x blocksize (block 3),
the directory's first block at DOP 4 holding the DIRECTOR and ALLOCMAP FSTs, then the
allocation map's blocks (5...) and, when it needs more than one block, its pointer tree.
Only these metadata blocks are written; the rest of the device is left as it is.
"""

from __future__ import annotations

import re
import time
from array import array
from typing import Callable

from fsproto.errors import GeometryError, UsageError
from fsproto.formats.base import Progress
from fsproto.formats.cms.directory import Fst
from fsproto.formats.cms.layout import (
    ADT,
    ADTFLGL_CENTURY,
    ALLOCMAP_NAME,
    ALLOCMAP_TYPE,
    BLOCK_SIZES,
    CMS1,
    DIRECTOR_NAME,
    DIRECTOR_TYPE,
    FLAG_CENTURY,
    FST_SIZE,
    RECFM_F,
)
from fsproto.formats.cms.pointers import Tree, levels_for, pointer_block_bytes, level_counts
from fsproto.formats.cms.volume import encode_date
from fsproto.rawdev import BlockDevice, BlockSizeAdapter

DOP = 4
MAX_BLOCKS = 0x7FFFFFFF
_LABEL_RE = re.compile(r"[A-Z0-9#@$\-_+:]{1,6}")


def mkfs(dev: BlockDevice, *, block_size: int = 4096, label: str = "FSPROT", progress: Progress | None = None,
         clock: Callable[[], float] = time.time) -> None:
    """Format *dev*. Raises UsageError (bad block size or label), GeometryError (device too small)."""
    if block_size not in BLOCK_SIZES:
        raise UsageError(f"block size {block_size} is not one of {BLOCK_SIZES}")
    vol_id = label.upper()
    if not _LABEL_RE.fullmatch(vol_id):
        raise UsageError(f"label {label!r}: 1-6 characters of A-Z 0-9 # @ $ - _ + :")
    if dev.read_only:
        raise UsageError(f"{dev.name} is read-only")
    if dev.size % block_size and dev.block_size > block_size:
        raise GeometryError(f"device size {dev.size} is not a multiple of {block_size}", device=dev.name)
    num = min(dev.size // block_size, MAX_BLOCKS)
    bits_per_block = 8 * block_size
    map_blocks = -(-num // bits_per_block)
    ppb = block_size // 4
    map_levels = levels_for(map_blocks, ppb)
    map_ptrs = sum(level_counts(map_blocks, map_levels, ppb)[1:])
    first_free = DOP + 1 + map_blocks + map_ptrs
    if num < first_free + 1:
        raise GeometryError(f"{dev.size} bytes is too small for a CMS disk of {block_size}-byte blocks "
                            f"(needs {first_free + 1} blocks)", device=dev.name)
    bdev = dev if dev.block_size == block_size else BlockSizeAdapter(dev, block_size, allow_tail=True,
                                                                      owns_inner=False)
    total_steps = first_free
    done = 0

    def step(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total_steps)

    now = clock()
    date, century = encode_date(now)
    # The map: blocks 1..first_free-1 in use.
    used = first_free - 1
    bitmap = bytearray(map_blocks * block_size)
    full, rest = divmod(used, 8)
    bitmap[:full] = b"\xff" * full
    if rest:
        bitmap[full] = (0xFF << (8 - rest)) & 0xFF
    map_data = array("I", range(DOP + 1, DOP + 1 + map_blocks))
    map_tree = Tree(4, ppb, map_data)
    nxt = DOP + 1 + map_blocks
    for lvl in range(map_levels):
        cnt = level_counts(map_blocks, map_levels, ppb)[lvl + 1]
        map_tree.pointer_levels.append(array("I", range(nxt, nxt + cnt)))
        nxt += cnt
    flag = FLAG_CENTURY if century else 0
    director = Fst(DIRECTOR_NAME, DIRECTOR_TYPE, bytes(8), b"\x00\x00", bytes(4), RECFM_F, flag, FST_SIZE,
                   bytes(4), DOP, 1, 2, 0, 4, date, bytes(4))
    allocmap = Fst(ALLOCMAP_NAME, ALLOCMAP_TYPE, bytes(8), b"\x00\x00", bytes(4), RECFM_F, flag, block_size,
                   bytes(4), map_tree.fop, map_blocks, map_blocks, map_levels, 4, date, bytes(4))
    # Blocks 1-3: zero, the label in block 3.
    head = bytearray(3 * block_size)
    head[2 * block_size : 2 * block_size + 80] = ADT.build(dict(
        ADTIDENT=CMS1, ADTID=vol_id.ljust(6).encode("cp1047"), ADTVER=0, ADTDBSIZ=block_size, ADTDOP=DOP,
        ADTCYL=0, ADTMCYL=0, ADTNUM=num, ADTUSED=used, ADTFSTSZ=FST_SIZE, ADTNFST=block_size // FST_SIZE,
        ADTCRED=date, ADTFLGL=ADTFLGL_CENTURY if century else 0, reserved_51=b"\x00", ADTOFFST=0, ADTAMNB=0,
        ADTAMND=0, ADTAMUP=0, ADTOFCNT=0, ADTSFNAM=bytes(8)))
    dirblock = bytearray(block_size)
    dirblock[:FST_SIZE] = director.to_bytes()
    dirblock[FST_SIZE : 2 * FST_SIZE] = allocmap.to_bytes()
    # Map and pointer blocks first, the directory, and the label last: a cut mid-mkfs leaves no label.
    for j, b in enumerate(map_data):
        bdev.write(b - 1, bitmap[j * block_size : (j + 1) * block_size])
        step()
    for lvl, blocks in enumerate(map_tree.pointer_levels, 1):
        for i, b in enumerate(blocks):
            bdev.write(b - 1, pointer_block_bytes(map_tree, lvl, i, block_size))
            step()
    bdev.write(DOP - 1, dirblock)
    step()
    bdev.write(0, head)
    step(3)
    bdev.flush()
