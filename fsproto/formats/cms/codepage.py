"""EBCDIC code pages for CMS text: IBM-1047 (cmsfs-fuse's default) and cp037.

Python ships cp037 but not cp1047. IBM-1047 differs from cp037 at six byte values: 0x5F, 0xAD,
0xB0, 0xBA, 0xBB, 0xBD hold ``^ [ ¬ Ý ¨ ]`` in other places. We derive the 1047 table from
Python's cp037 table and those six facts, and register it as codec ``cp1047`` (aliases
``ibm1047``, ``ibm-1047``).

0x15 and 0x25: shared/specs/fuse.md says IBM-1047 swaps LF and NEL there (the z/OS UNIX
convention), but the reference, cmsfs-fuse through glibc's IBM1047 table, reads 0x15 as NEL and
0x25 as LF exactly as cp037 does -- measured on every shared image that holds those bytes
(manifest ``cmsfs_ascii_read``) and in the reference harness. The reference is the judge, so
fsproto follows it (IBM's CDRA table for CCSID 1047 agrees).
"""

from __future__ import annotations

import codecs
from encodings import cp037

from fsproto.errors import UsageError

# byte -> character in IBM-1047 where it differs from cp037.
CP1047_DIFFERENCES: dict[int, str] = {
    0x5F: "^",
    0xAD: "[",
    0xB0: "\xac",  # ¬
    0xBA: "\xdd",  # Ý
    0xBB: "\xa8",  # ¨
    0xBD: "]",
}

_DECODING_TABLE = "".join(
    CP1047_DIFFERENCES.get(b, cp037.decoding_table[b]) for b in range(256)
)
_ENCODING_TABLE = codecs.charmap_build(_DECODING_TABLE)
assert len(set(_DECODING_TABLE)) == 256  # a bijection, like cp037


def _encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return codecs.charmap_encode(text, errors, _ENCODING_TABLE)


def _decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    return codecs.charmap_decode(data, errors, _DECODING_TABLE)


_INFO = codecs.CodecInfo(name="cp1047", encode=_encode, decode=_decode)
_NAMES = {"cp1047", "ibm1047", "ibm_1047", "1047"}


def _search(name: str) -> codecs.CodecInfo | None:
    return _INFO if name.replace("-", "_").lower() in _NAMES else None


codecs.register(_search)

SUPPORTED = ("cp1047", "cp037")


def check_codepage(name: str) -> str:
    """Normalise a code page name; raises UsageError for one CMS text cannot use."""
    norm = name.replace("-", "").replace("_", "").lower()
    norm = {"ibm1047": "cp1047", "1047": "cp1047", "ibm037": "cp037", "037": "cp037"}.get(norm, norm)
    if norm not in SUPPORTED:
        raise UsageError(f"unsupported code page {name!r}; use one of {', '.join(SUPPORTED)}")
    return norm
