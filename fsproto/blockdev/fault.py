"""FaultInjectingDevice: power cuts, torn writes and media errors on demand, for crash tests.

The model (what a test can rely on):

* Writes are **write-through and in order**: a write that is not dropped has landed on the inner
  device when ``write()`` returns; there is no volatile cache and no reordering. Inside one
  multi-block write, blocks land in ascending LBA order.
* **Power cut by write calls** (``cut_after_writes=N``): the first N ``write()`` calls land; the
  (N+1)-th and every later one is silently dropped, as if the machine had lost power, so the
  inner device holds exactly the state a crash after N writes leaves. ``N=0`` drops everything.
* **Power cut by blocks** (``cut_after_blocks=N``): the first N *blocks* written (counted across
  calls, in the order above) land; a write that straddles the limit lands only its first blocks.
* **Torn write at the cut** (``torn_bytes=k``): the write in flight when the power fails (the first
  one a cut drops) lands only its first *k* bytes; a *k* that is not a multiple of the block size
  tears inside a block (the rest of that block keeps its old bytes). Sector-granular tearing is
  ``k = s * 512``.
* **Torn write without a cut** (:meth:`tear_write`): write number *i* (0-based, as counted by
  ``writes_seen``) lands only its first *k* bytes and the device keeps going.
* **Read errors** at chosen LBAs: a read whose range covers one raises MediaError naming the
  first bad LBA; **write errors** likewise (the write does not land).
* After a cut, ``flush()`` is dropped too and ``after_cut="error"`` makes later writes raise
  MediaError instead of vanishing (to stop a workload early). Reads keep being served from the
  inner device: they show the media as it is, without the dropped writes.

Counters: ``writes_seen`` counts every ``write()`` call that reached this device (landed, torn
or dropped; calls refused by the base checks, e.g. read-only or out of range, are not counted);
``blocks_seen`` counts their blocks; ``flushes_seen`` the flushes (so a test can cut at a
flush boundary: run once uncut, note ``writes_seen`` after each flush). :meth:`arm` resets both, clears the cut and sets new
triggers, so one wrapper can be re-used for every cut point of a workload.
"""

from __future__ import annotations

from typing import Iterable, Literal

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.wrap import WrappedDevice
from fsproto.errors import MediaError, UsageError

AfterCut = Literal["drop", "error"]


class FaultInjectingDevice(WrappedDevice):
    """Wraps *inner* and injects the faults described in the module docstring."""

    def __init__(
        self,
        inner: BlockDevice,
        *,
        cut_after_writes: int | None = None,
        cut_after_blocks: int | None = None,
        torn_bytes: int | None = None,
        read_errors: Iterable[int] = (),
        write_errors: Iterable[int] = (),
        after_cut: AfterCut = "drop",
        name: str | None = None,
        owns_inner: bool = True,
    ) -> None:
        """Raises UsageError for contradictory or negative triggers."""
        super().__init__(
            inner, name or f"faulty:{inner.name}", inner.block_size, inner.num_blocks, owns_inner=owns_inner
        )
        self._read_errors: set[int] = set(read_errors)
        self._write_errors: set[int] = set(write_errors)
        self._tears: dict[int, int] = {}
        self.arm(
            cut_after_writes=cut_after_writes,
            cut_after_blocks=cut_after_blocks,
            torn_bytes=torn_bytes,
            after_cut=after_cut,
        )

    # -- configuration ---------------------------------------------------------------------
    def arm(
        self,
        *,
        cut_after_writes: int | None = None,
        cut_after_blocks: int | None = None,
        torn_bytes: int | None = None,
        after_cut: AfterCut = "drop",
    ) -> None:
        """Reset counters and the cut state, then set new power-cut triggers (None = no cut).

        Read/write error LBAs and :meth:`tear_write` entries are kept. Raises UsageError when
        both triggers are given, a value is negative, or *torn_bytes* has no cut to belong to.
        """
        if cut_after_writes is not None and cut_after_blocks is not None:
            raise UsageError("give cut_after_writes or cut_after_blocks, not both", device=self._name)
        for label, v in (("cut_after_writes", cut_after_writes), ("cut_after_blocks", cut_after_blocks),
                         ("torn_bytes", torn_bytes)):
            if v is not None and v < 0:
                raise UsageError(f"{label} must be >= 0, not {v}", device=self._name)
        if torn_bytes is not None and cut_after_writes is None and cut_after_blocks is None:
            raise UsageError("torn_bytes needs a cut (cut_after_writes or cut_after_blocks)", device=self._name)
        if after_cut not in ("drop", "error"):
            raise UsageError(f"after_cut must be 'drop' or 'error', not {after_cut!r}", device=self._name)
        self._cut_after_writes = cut_after_writes
        self._cut_after_blocks = cut_after_blocks
        self._torn_bytes = torn_bytes
        self._after_cut = after_cut
        self._cut = False
        self.writes_seen = 0
        self.blocks_seen = 0
        self.writes_dropped = 0  # writes that did not land whole (torn at the cut, or after it)
        self.flushes_seen = 0

    def disarm(self) -> None:
        """No more power cuts (counters reset); error LBAs and tears stay."""
        self.arm()

    def tear_write(self, index: int, keep_bytes: int) -> None:
        """Make write number *index* (0-based, counted by writes_seen) land only its first *keep_bytes*."""
        if index < 0 or keep_bytes < 0:
            raise UsageError("tear_write needs index >= 0 and keep_bytes >= 0", device=self._name)
        self._tears[index] = keep_bytes

    def fail_reads(self, *lbas: int) -> None:
        """Reads covering any of *lbas* raise MediaError from now on."""
        self._read_errors.update(lbas)

    def fail_writes(self, *lbas: int) -> None:
        """Writes covering any of *lbas* raise MediaError (and do not land) from now on."""
        self._write_errors.update(lbas)

    def heal(self, *lbas: int) -> None:
        """Forget read and write errors at *lbas* (all of them when none are given)."""
        if not lbas:
            self._read_errors.clear()
            self._write_errors.clear()
        self._read_errors.difference_update(lbas)
        self._write_errors.difference_update(lbas)

    # -- state -------------------------------------------------------------------------------
    @property
    def power_cut(self) -> bool:
        """True once the power has been cut (writes are being dropped)."""
        return self._cut

    # -- I/O -------------------------------------------------------------------------------
    def _read(self, lba: int, count: int) -> bytes:
        self._raise_if_bad(self._read_errors, lba, count, "read")
        return self._inner.read(lba, count)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        bs = self._block_size
        count = len(data) // bs
        index = self.writes_seen
        self.writes_seen += 1
        blocks_before = self.blocks_seen
        self.blocks_seen += count
        if self._cut:
            self._drop(lba)
            return
        self._raise_if_bad(self._write_errors, lba, count, "write")
        keep = len(data)  # bytes of this write that land
        if self._cut_after_writes is not None and index >= self._cut_after_writes:
            keep = 0
        elif self._cut_after_blocks is not None and blocks_before + count > self._cut_after_blocks:
            keep = max(0, self._cut_after_blocks - blocks_before) * bs
        if keep < len(data):
            # This write is the one in flight when the power fails.
            self._cut = True
            if self._torn_bytes is not None:
                keep = min(len(data), keep + self._torn_bytes)
        elif index in self._tears:
            keep = min(len(data), self._tears[index])
        self._land(lba, memoryview(data)[:keep])
        if self._cut:
            self.writes_dropped += 1
            if self._after_cut == "error":
                raise MediaError("power cut: write lost", device=self._name, lba=lba)

    def _flush(self) -> None:
        self.flushes_seen += 1
        if not self._cut:
            self._inner.flush()

    # -- helpers -----------------------------------------------------------------------------
    def _drop(self, lba: int) -> None:
        self.writes_dropped += 1
        if self._after_cut == "error":
            raise MediaError("power cut: write lost", device=self._name, lba=lba)

    def _land(self, lba: int, part: memoryview) -> None:
        """Write the first ``len(part)`` bytes at *lba*; a partial last block keeps its old tail."""
        bs = self._block_size
        whole = len(part) - len(part) % bs
        if whole:
            self._inner.write(lba, part[:whole])
        if whole < len(part):
            block = lba + whole // bs
            old = bytearray(self._inner.read(block, 1))
            old[: len(part) - whole] = part[whole:]
            self._inner.write(block, old)

    def _raise_if_bad(self, bad: set[int], lba: int, count: int, op: str) -> None:
        if not bad:
            return
        hits = [b for b in bad if lba <= b < lba + count]
        if hits:
            first = min(hits)
            raise MediaError(f"injected {op} error", device=self._name, lba=first)
