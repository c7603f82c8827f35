"""fsproto's user-space NVMe driver: several I/O queue pairs with many commands in flight, PRPs
or SGLs, MSI-X interrupts where the backend delivers them (vfio), polling elsewhere.

:mod:`~fsproto.hw.nvme.commands` (entries, status codes, Identify data, declarations only) ->
:mod:`~fsproto.hw.nvme.datapointers` (PRP lists, SGLs) ->
:mod:`~fsproto.hw.nvme.queues` (rings, phase tags, doorbells, per-command trackers) ->
:mod:`~fsproto.hw.nvme.controller` (bring-up, batches of I/O, abort/reset, shutdown); :mod:`~fsproto.hw.nvme.attach`
connects a driver to qtest, uio or vfio. The block device over a namespace is
:class:`fsproto.blockdev.nvme.NvmeBlockDevice`.
"""

from fsproto.hw.nvme.commands import Completion, IdentifyController, IdentifyNamespace
from fsproto.hw.nvme.controller import IoRequest, Namespace, NvmeController
from fsproto.hw.nvme.datapointers import PrpBuilder
from fsproto.hw.nvme.queues import QueuePair

__all__ = ["Completion", "IdentifyController", "IdentifyNamespace", "IoRequest", "Namespace", "NvmeController",
           "PrpBuilder", "QueuePair"]
