"""Notifications from the daemon to the kernel (invalidate an inode, a directory entry), sent
from a helper thread.

They cannot be sent from inside a request handler: the kernel holds the locks of the request
being served (written pages for WRITE, the parent directory for CREATE and RENAME) and the
notification waits for those same locks, so sending it inline would deadlock the mount. Queued
here, each goes out once the handler has replied.

Reference: libfuse ``include/fuse_lowlevel.h`` ``fuse_lowlevel_notify_inval_inode``,
``fuse_lowlevel_notify_inval_entry``. Limit: a notification arrives a moment after the reply
that caused it, so a racing request may still see the old cached state once.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

import pyfuse3

log = logging.getLogger("fsproto.fuse")


class KernelNotifier:
    """A FIFO of notifications served by one lazily started thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def inode(self, inode: int) -> None:
        """Drop the kernel's cached pages and attributes of *inode*."""
        self._push(lambda: pyfuse3.invalidate_inode(inode, attr_only=False))

    def entry(self, parent_inode: int, name: bytes) -> None:
        """Drop the kernel's cached directory entry *name* (positive or negative) in *parent_inode*."""
        self._push(lambda: pyfuse3.invalidate_entry(parent_inode, name))

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _push(self, fn: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fuse-notify", daemon=True)
            self._thread.start()
        self._queue.put(fn)

    def _run(self) -> None:
        while (fn := self._queue.get()) is not None:
            try:
                fn()
            except OSError as e:  # ENOENT: the kernel already forgot the inode or the entry
                log.debug("kernel notification: %s", e)
