"""The FUSE mount.

* :mod:`fsproto.mount.adapter` -- the one ``pyfuse3.Operations`` class over a Filesystem;
* :mod:`fsproto.mount.inodes` -- the inode <-> path table with lookup counts and orphans;
* :mod:`fsproto.mount.notify` -- invalidations sent to the kernel from a helper thread;
* :mod:`fsproto.mount.options` -- ``-o`` mount options and the adapter's tuning knobs;
* :mod:`fsproto.mount.daemon` -- running a mount: foreground or background, logging, signals,
  clean unmount, and ``fsproto umount``.

Imports only look down: daemon -> adapter -> inodes, notify, options. :mod:`fsproto.fuse_mount`
re-exports the adapter and :func:`fsproto.mount.daemon.mount`.
"""
