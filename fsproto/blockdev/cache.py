"""VolatileCacheDevice: a disk with a volatile write cache, for crash tests that need reordering.

:class:`~fsproto.blockdev.fault.FaultInjectingDevice` models a write-through disk: writes land
in order. Real disks acknowledge writes into a volatile cache and persist them in any order
until a flush. This wrapper models that:

* a write is held in the cache (reads see it: read-your-writes) and is *not* on the inner
  device yet;
* ``flush()`` lands every cached block, in the order written, then flushes the inner device;
* :meth:`crash` is the power cut: each cached block independently lands or is lost, as chosen
  by *keep* (a predicate over ``(write_index, lba)``) or by a seeded random choice; the cache is
  emptied and the device keeps working (as after a reboot);
* when the cache holds more than ``max_cached_bytes`` it writes back its oldest blocks, as a
  full cache does, so memory stays bounded.

Granularity is the block: a cached block either lands whole or not at all (combine with
FaultInjectingDevice under this one to tear blocks too). Limits: no FUA; a block written twice
between flushes is one cache entry holding the newest data (older versions cannot land).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Callable

from fsproto.blockdev.base import BlockDevice
from fsproto.blockdev.wrap import WrappedDevice

KeepFn = Callable[[int, int], bool]


class VolatileCacheDevice(WrappedDevice):
    """Wraps *inner* with a volatile write cache (see the module docstring)."""

    def __init__(
        self,
        inner: BlockDevice,
        *,
        max_cached_bytes: int = 64 << 20,
        name: str | None = None,
        owns_inner: bool = True,
    ) -> None:
        super().__init__(inner, name or f"cached:{inner.name}", inner.block_size, inner.num_blocks,
                         owns_inner=owns_inner)
        self._max_blocks = max(1, max_cached_bytes // inner.block_size)
        # lba -> (index of the write that last touched it, data); insertion order = write order.
        self._cache: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self.writes_seen = 0

    @property
    def cached_blocks(self) -> int:
        """Blocks written but not yet on the inner device."""
        return len(self._cache)

    def _read(self, lba: int, count: int) -> bytes:
        if not self._cache:
            return self._inner.read(lba, count)
        bs = self._block_size
        out = bytearray(self._inner.read(lba, count))
        for b in range(lba, lba + count):
            hit = self._cache.get(b)
            if hit is not None:
                out[(b - lba) * bs : (b - lba + 1) * bs] = hit[1]
        return bytes(out)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        bs = self._block_size
        index = self.writes_seen
        self.writes_seen += 1
        raw = bytes(data)
        for i in range(len(raw) // bs):
            self._cache.pop(lba + i, None)  # re-append: the newest write is the youngest entry
            self._cache[lba + i] = (index, raw[i * bs : (i + 1) * bs])
        while len(self._cache) > self._max_blocks:
            old_lba, (_, old) = self._cache.popitem(last=False)
            self._inner.write(old_lba, old)

    def _flush(self) -> None:
        while self._cache:
            lba, (_, data) = self._cache.popitem(last=False)
            self._inner.write(lba, data)
        self._inner.flush()

    def crash(self, keep: KeepFn | None = None, *, seed: int | None = None) -> list[int]:
        """Power cut: each cached block lands iff ``keep(write_index, lba)`` (random with *seed*
        when no *keep* is given; everything is lost when neither is). Returns the LBAs that landed.

        Raises DeviceError when closed, MediaError from the inner device.
        """
        self._check_open()
        if keep is None:
            if seed is None:
                def keep(index: int, lba: int) -> bool:
                    return False
            else:
                rng = random.Random(seed)

                def keep(index: int, lba: int) -> bool:
                    return rng.random() < 0.5
        landed = []
        entries = list(self._cache.items())
        self._cache.clear()
        for lba, (index, data) in entries:
            if keep(index, lba):
                self._inner.write(lba, data)
                landed.append(lba)
        return landed
