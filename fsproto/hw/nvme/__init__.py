"""fsproto's user-space NVMe driver (polled, PRP data pointers, one I/O queue pair).

:mod:`~fsproto.hw.nvme.commands` (entries, status codes, Identify data, declarations only) ->
:mod:`~fsproto.hw.nvme.queues` (rings, phase tags, doorbells, PRP lists) ->
:mod:`~fsproto.hw.nvme.controller` (bring-up, I/O, shutdown); :mod:`~fsproto.hw.nvme.attach`
connects a driver to qtest, uio or vfio. The block device over a namespace is
:class:`fsproto.blockdev.nvme.NvmeBlockDevice`.
"""

from fsproto.hw.nvme.commands import Completion, IdentifyController, IdentifyNamespace
from fsproto.hw.nvme.controller import Namespace, NvmeController
from fsproto.hw.nvme.queues import PrpBuilder, QueuePair

__all__ = ["Completion", "IdentifyController", "IdentifyNamespace", "Namespace", "NvmeController", "PrpBuilder",
           "QueuePair"]
