"""Pieces of the FUSE mount that are not the adapter itself.

* :mod:`fsproto.mount.inodes` -- the inode <-> path table with lookup counts;
* :mod:`fsproto.mount.options` -- ``-o`` mount options and the adapter's tuning knobs;
* :mod:`fsproto.mount.daemon` -- running a mount: foreground or background, logging, signals,
  clean unmount, and ``fsproto umount``.

The adapter is :mod:`fsproto.fuse_mount`.
"""
