"""The reference harness for CMS: Linux's cmsfs-fuse (IBM s390-tools) in s390x emulation.

cmsfs-fuse is the only CMS EDF implementation outside z/VM and runs only on s390x, so it runs
here inside ``qemu-system-s390x`` (TCG). Three calls:

* :func:`prepare` -- once, idempotently: QEMU >= 8.1 on the host, the guest's kernel,
  busybox, cmsfs-fuse and libraries from Debian's package registry, an initramfs built in
  Python, all in a cache directory (``~/.cache/fsproto/cmsref``);
* :func:`run` -- boot the guest with disk images attached, run a shell script in it;
* :func:`inspect` / :func:`inspect_many` -- everything the reference shows of a disk.

Facts this relies on: ``../shared/specs/cms-reference.md``. Limits: Debian hosts only; each
boot costs ~5 s under TCG on top of the work; the guest clock of cmsfs-fuse is frozen with
libfaketime by default so that runs are deterministic.
"""

from fsproto.testing.cmsref.guest import FAKETIME, Disk, Result, run
from fsproto.testing.cmsref.inspect import inspect, inspect_many, inspect_script, parse_inspection
from fsproto.testing.cmsref.label import cms_block_size
from fsproto.testing.cmsref.prepare import Prepared, default_cache, load, prepare

__all__ = [
    "FAKETIME", "Disk", "Prepared", "Result", "cms_block_size", "default_cache", "inspect", "inspect_many",
    "inspect_script", "load", "parse_inspection", "prepare", "run",
]
