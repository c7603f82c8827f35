"""Where a command's data is: PRP entries and lists, or an SGL, written into a per-command page.

References: NVM Express Base Specification 2.0, 4.3.1 (PRP entries and PRP lists: PRP1 may
start anywhere dword aligned, every further entry is page aligned, a full list page chains to
the next through its last entry) and 4.3.2 (SGL descriptors: a Data Block descriptor in SGL1
when the data is one contiguous run, else SGL1 is a Last Segment descriptor pointing to an
array of Data Block descriptors); ``shared/specs/hardware.md`` 3.1.

Each command in flight owns one list page (:class:`fsproto.hw.nvme.queues.QueuePair` gives one
per command identifier), so nothing is shared between commands and nothing is allocated per
command. Addresses come from ``buf.device_addr(offset)`` page by page: a buffer need not be
device-contiguous (pagemap-translated host memory under uio).

Limits: one list page per command (PRPs: 511 + 1 entries, 2 MiB at 4 KiB pages; SGLs: 256
runs), which is above every transfer fsproto issues (MDTS caps them).
"""

from __future__ import annotations

from fsproto.errors import HardwareError, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.commands import SGL_DESCRIPTOR_SIZE, SGL_LAST_SEGMENT, sgl_descriptor, sgl_fields


def _check(buf: DmaBuffer, offset: int, length: int) -> None:
    if length <= 0 or offset < 0 or offset + length > buf.size:
        raise UsageError(f"transfer {offset}+{length} outside the {buf.size}-byte buffer")
    if offset % 4:
        raise UsageError("a data pointer must be dword aligned")


def prp_pointers(buf: DmaBuffer, offset: int, length: int, page: int, lists: DmaBuffer, list_offset: int,
                 list_pages: int = 1) -> tuple[int, int]:
    """(PRP1, PRP2) for *length* bytes at *offset* in *buf*, the list (if any) written into
    *lists* at *list_offset* (*list_pages* pages). Raises UsageError, HardwareError."""
    _check(buf, offset, length)
    prp1 = buf.device_addr(offset)
    first = page - prp1 % page  # bytes PRP1 covers (to the end of its page)
    if length <= first:
        return prp1, 0
    rest = [buf.device_addr(o) for o in range(offset + first, offset + length, page)]
    if any(a % page for a in rest):
        raise HardwareError("buffer pages are not aligned to the controller page size", device=str(buf))
    if len(rest) == 1:
        return prp1, rest[0]
    per_page = page // 8
    if len(rest) > list_pages * (per_page - 1) + 1:
        raise UsageError(f"transfer of {length} bytes needs {len(rest)} PRP entries; the list holds "
                         f"{list_pages * (per_page - 1) + 1}")
    entries: list[int] = []
    remaining = rest
    for p in range(list_pages):
        if len(remaining) > per_page:  # the last slot chains to the next list page
            entries += remaining[: per_page - 1] + [lists.device_addr(list_offset + (p + 1) * page)]
            remaining = remaining[per_page - 1 :]
        else:
            entries += remaining
            break
    lists.write(list_offset, b"".join(a.to_bytes(8, "little") for a in entries))
    return prp1, lists.device_addr(list_offset)


def sgl_pointers(buf: DmaBuffer, offset: int, length: int, page: int, lists: DmaBuffer, list_offset: int,
                 *, dword_aligned: bool = False, segments: bool = True) -> tuple[int, int] | None:
    """SGL1 as the (prp1, prp2) words of DW6-9, for a command sent with PSDT 01.

    Device-contiguous pages are merged into one Data Block descriptor each; one run goes in SGL1
    itself, several go in a segment in *lists* that SGL1 points to (a Last Segment descriptor),
    or, with *segments* False, None is returned (the caller then uses PRPs).
    *dword_aligned* (SGLS = 10b) refuses lengths that are not a multiple of 4.
    Raises UsageError, HardwareError.
    """
    _check(buf, offset, length)
    if dword_aligned and length % 4:
        raise UsageError("this controller needs dword-aligned SGL data blocks")
    runs: list[list[int]] = []
    pos = offset
    while pos < offset + length:
        addr = buf.device_addr(pos)
        step = min(page - addr % page, offset + length - pos)
        if runs and runs[-1][0] + runs[-1][1] == addr:
            runs[-1][1] += step
        else:
            runs.append([addr, step])
        pos += step
    if len(runs) == 1:
        return sgl_fields(sgl_descriptor(runs[0][0], runs[0][1]))
    if not segments:
        return None  # scattered data: the caller uses PRPs instead
    if len(runs) * SGL_DESCRIPTOR_SIZE > page:
        raise UsageError(f"transfer of {length} bytes needs {len(runs)} SGL descriptors; a segment holds "
                         f"{page // SGL_DESCRIPTOR_SIZE}")
    lists.write(list_offset, b"".join(sgl_descriptor(a, n) for a, n in runs))
    return sgl_fields(sgl_descriptor(lists.device_addr(list_offset), len(runs) * SGL_DESCRIPTOR_SIZE,
                                     SGL_LAST_SEGMENT))


class PrpBuilder:
    """PRP1/PRP2 into one list buffer of its own (admin commands, and callers that build a
    command by hand); I/O queues build into their per-command pages instead."""

    def __init__(self, alloc, page: int, list_pages: int = 1) -> None:  # type: ignore[no-untyped-def]
        self.page, self.list_pages = page, list_pages
        self.list = alloc(page * list_pages)
        self.per_page = page // 8

    @property
    def max_pages(self) -> int:
        """Most data pages one transfer may touch with this list."""
        return 1 + self.list_pages * (self.per_page - 1) + 1

    def build(self, buf: DmaBuffer, offset: int, length: int) -> tuple[int, int]:
        """(PRP1, PRP2) for *length* bytes at *offset* in *buf*. Raises UsageError, HardwareError."""
        return prp_pointers(buf, offset, length, self.page, self.list, 0, self.list_pages)

    def free(self) -> None:
        self.list.free()


class PreparedPointers:
    """The data pointers of one page-aligned buffer window, built once, for any prefix of it.

    A block device's bounce slots are fixed, so their PRP list is written once here (a shorter
    transfer uses a prefix of the same list) and a device-contiguous window is one SGL Data
    Block descriptor whatever the length: a command then needs no pointer work at all. A
    scattered window (pagemap-translated host memory) gets PRPs even when SGLs are on.
    """

    def __init__(self, buf: DmaBuffer, offset: int, length: int, page: int, alloc, sgl: int) -> None:  # type: ignore[no-untyped-def]
        if offset % page or length <= 0 or offset + length > buf.size:
            raise UsageError(f"prepared window {offset}+{length} is not page aligned inside the buffer")
        self.page, self.sgl = page, sgl
        self.addrs = [buf.device_addr(o) for o in range(offset, offset + length, page)]
        self.contiguous = all(a == self.addrs[0] + i * page for i, a in enumerate(self.addrs))
        self.list: DmaBuffer | None = None
        if sgl and not self.contiguous:
            self.sgl = 0  # scattered pages: a PRP list built once beats an SGL segment per command
        if not self.sgl and len(self.addrs) > 2:
            if len(self.addrs) - 1 > page // 8:
                raise UsageError(f"a prepared window of {length} bytes needs more than one PRP list page")
            self.list = alloc(page)
            self.list.write(0, b"".join(a.to_bytes(8, "little") for a in self.addrs[1:]))

    def pointers(self, length: int) -> tuple[int, int, int]:
        """(PSDT, DW6-7, DW8-9) for the first *length* bytes."""
        if self.sgl:
            p1, p2 = sgl_fields(sgl_descriptor(self.addrs[0], length))
            return 1, p1, p2
        pages = -(-length // self.page)
        if pages == 1:
            return 0, self.addrs[0], 0
        if pages == 2:
            return 0, self.addrs[0], self.addrs[1]
        assert self.list is not None
        return 0, self.addrs[0], self.list.device_addr(0)

    def free(self) -> None:
        if self.list is not None:
            self.list.free()
            self.list = None
