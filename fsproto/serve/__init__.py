"""``fsproto serve``: any fsproto block device as an NBD export, through nbdkit's Python plugin.

* :mod:`fsproto.serve.export` -- the byte-addressed NBD operations (read, write, FUA, flush,
  zero, trim) over a :class:`~fsproto.blockdev.base.BlockDevice`, and opening the served device
  (overlay, fault injection, trace, the writer's lock);
* :mod:`fsproto.serve.plugin` -- the script nbdkit's Python plugin runs (in nbdkit's process,
  under Debian's system python3, not the venv's interpreter);
* :mod:`fsproto.serve.server` -- starting, watching and stopping nbdkit from fsproto.

References: nbdkit-python-plugin(3), nbdkit-plugin(3), the NBD protocol
(https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
"""
