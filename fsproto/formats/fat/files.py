"""File data on a cluster chain: ranged reads and writes, one device call per contiguous run.

References: fatgen103 section 4 (a file is its first cluster plus the FAT chain). Callers pass
the chain; this module only maps byte ranges of a file to device byte ranges.
"""

from __future__ import annotations

from typing import Iterator

from fsproto.formats.fat.volume import Volume

MAX_FILE_SIZE = 0xFFFFFFFF  # DIR_FileSize is 32 bits


def runs(chain: list[int], first: int, last: int) -> Iterator[tuple[int, int, int]]:
    """Contiguous runs of chain[first:last+1] as (index in chain, first cluster, count)."""
    i = first
    while i <= last:
        j = i  # the run so far is chain[i..j]; grown a doubling slice at a time, compared in C
        step = 8
        while j < last:
            k = min(step, last - j)
            base = chain[i] + (j - i) + 1
            if chain[j + 1 : j + 1 + k] == list(range(base, base + k)):
                j += k
                step *= 2
            elif k == 1:
                break
            else:
                step = 1
        yield i, chain[i], j - i + 1
        i = j + 1


def read_range(vol: Volume, chain: list[int], offset: int, size: int) -> bytes:
    """*size* bytes at *offset* of the data held by *chain* (caller clamps to the file size)."""
    if size <= 0:
        return b""
    cs = vol.geo.cluster_size
    first, last = offset // cs, (offset + size - 1) // cs
    parts = []
    for idx, cluster, count in runs(chain, first, last):
        lo = max(offset, idx * cs)
        hi = min(offset + size, (idx + count) * cs)
        parts.append(vol.read_bytes(vol.cluster_offset(cluster) + lo - idx * cs, hi - lo))
    return b"".join(parts)


def read_range_into(vol: Volume, chain: list[int], offset: int, buf: memoryview) -> None:
    """Fill *buf* with the data at *offset* held by *chain* (caller clamps to the file size)."""
    size = len(buf)
    if size <= 0:
        return
    cs = vol.geo.cluster_size
    first, last = offset // cs, (offset + size - 1) // cs
    for idx, cluster, count in runs(chain, first, last):
        lo = max(offset, idx * cs)
        hi = min(offset + size, (idx + count) * cs)
        vol.read_bytes_into(vol.cluster_offset(cluster) + lo - idx * cs, buf[lo - offset : hi - offset])


def write_range(vol: Volume, chain: list[int], offset: int, data: bytes | bytearray | memoryview) -> None:
    """Write *data* at *offset* into the clusters of *chain* (which must already be long enough)."""
    if not data:
        return
    cs = vol.geo.cluster_size
    mv = memoryview(data)
    first, last = offset // cs, (offset + len(data) - 1) // cs
    for idx, cluster, count in runs(chain, first, last):
        lo = max(offset, idx * cs)
        hi = min(offset + len(data), (idx + count) * cs)
        vol.write_bytes(vol.cluster_offset(cluster) + lo - idx * cs, mv[lo - offset : hi - offset])


def zero_range(vol: Volume, chain: list[int], start: int, end: int) -> None:
    """Write zeros over bytes [start, end) of the chain's data, in bounded pieces."""
    piece = 1 << 20
    while start < end:
        n = min(piece, end - start)
        write_range(vol, chain, start, bytes(n))
        start += n


def clusters_for(size: int, cluster_size: int) -> int:
    return (size + cluster_size - 1) // cluster_size
