"""Find a CMS disk's block size from its volume label, as the reference would.

Kept independent of :mod:`fsproto.formats.cms` on purpose: the harness checks that format,
so it must not lean on it. Only the label's magic and ``ADTDBSIZ`` are read
(``../shared/specs/cms-edf.md``, "The volume label").
"""

from __future__ import annotations

from pathlib import Path

from fsproto.errors import DeviceError, FormatError

CMS1 = b"\xc3\xd4\xe2\xf1"  # "CMS1" in EBCDIC
BLOCK_SIZES = (512, 1024, 2048, 4096)


def cms_block_size(path: Path) -> int:
    """The block size of the CMS disk in image *path*.

    A disk with block size B carries its label at 2 x B (CKD style) or at B (FBA style),
    which is where cmsfs-fuse looks on a device with B-byte sectors.
    Raises FormatError when no label agrees with its own block size, DeviceError on I/O.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2 * max(BLOCK_SIZES) + 80)
    except OSError as e:
        raise DeviceError(f"cannot read the label: {e.strerror}", device=str(path)) from None
    for bs in BLOCK_SIZES:
        for off in (2 * bs, bs):
            label = head[off : off + 16]
            if len(label) == 16 and label[:4] == CMS1 and int.from_bytes(label[12:16], "big") == bs:
                return bs
    raise FormatError("no CMS1 label at 2 x or 1 x any CMS block size", device=str(path), struct="ADT")
