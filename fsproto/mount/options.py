"""Mount options: the user's ``-o`` list and the adapter's tuning knobs, in one dataclass.

``uid=``, ``gid=``, ``umask=``, ``fmask=`` and ``dmask=`` are applied by the adapter (libfuse
3's low-level API has no such options) with kernel vfat's meaning (``Documentation/
filesystems/vfat.rst``): owner and group of every file, and the permission bits *cleared* from
files (``fmask``), directories (``dmask``) or both (``umask``, which sets the other two; the
last one given wins, as in the kernel's parser). ``allow_other``, ``default_permissions``,
``fsname=``, ``subtype=`` and ``ro`` go to the kernel through libfuse.

``allow_other`` implies ``default_permissions`` (the kernel then checks every access against
the modes and owners above, as it does for vfat) unless ``no_default_permissions`` is given:
without it, a shared mount lets every user write every file, whatever ``stat`` says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from fsproto.errors import UsageError

# Why these defaults: the mount is the only writer of the device, so nothing can change a file
# behind the kernel's back and attributes and names can be cached (the adapter invalidates the
# one case where its own write changes a size unexpectedly). Measured with tools/bench_fuse.py
# (10,000 files): timeouts of 0 make `ls -l` 3.6x slower on memfs (10.1 s vs 2.8 s) and 6x on
# CMS (12.8 s vs 2.1 s), and 4 KiB reads 10-17x slower (a GETATTR before every read). We
# still keep them finite (not hours) because a case-insensitive format (CMS) answers several
# spellings of one name and the kernel only invalidates the spelling used for an unlink or
# rename: a stale alias lives at most ENTRY_TIMEOUT seconds.
ATTR_TIMEOUT = 10.0
ENTRY_TIMEOUT = 10.0


@dataclass(frozen=True)
class MountOptions:
    """Everything that shapes one mount. Build from a CLI ``-o`` list with :func:`parse_options`."""

    read_only: bool = False
    allow_other: bool = False
    default_permissions: bool | None = None  # None: follow allow_other (see the module docstring)
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    fmask: int | None = None  # None: umask
    dmask: int | None = None  # None: umask
    fsname: str | None = None  # default: the device path
    subtype: str | None = None  # default: the format name
    attr_timeout: float = ATTR_TIMEOUT
    entry_timeout: float = ENTRY_TIMEOUT
    keep_cache: bool = True  # only writer: pages cached by the kernel stay valid across opens
    direct_io: bool = False  # forced on for views that do not read back what was written (text)
    # None: on when the format declares byte-exact sizes (see fsproto.mount.adapter)
    writeback_cache: bool | None = None
    # False (-o noxattr): getxattr/listxattr answer ENOSYS, after which the kernel stops sending
    # the GETXATTR security.capability it sends before every write(2). setxattr still works.
    xattr: bool = True
    read_ahead_kb: int | None = None  # set on the mount's bdi after mounting (root only)

    def with_(self, **changes: object) -> "MountOptions":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def checks_permissions(self) -> bool:
        """Whether the kernel checks modes and owners (``default_permissions`` in effect)."""
        return self.allow_other if self.default_permissions is None else self.default_permissions

    def permission_bits(self, suggested: int, *, is_dir: bool) -> int:
        """The mode bits stat reports: the format's *suggested* bits minus fmask or dmask.

        A format suggests what it can store (FAT: 0o777, 0o555 when read-only, as the kernel's
        fat_make_mode; CMS: 0o666), the masks take away what the user asked to hide.
        """
        mask = self.dmask if is_dir else self.fmask
        return suggested & 0o7777 & ~(self.umask if mask is None else mask)

    def refuses_attribute_change(self, *, mode: int | None, uid: int | None, gid: int | None) -> bool:
        """Whether a chmod/chown must fail with EPERM, as kernel vfat's fat_setattr decides.

        Owners come from uid=/gid=: changing them is refused. Permission bits come from the
        masks: a mode with bits beyond rwx (setuid, setgid, sticky) is refused, any other is
        accepted and not stored (vfat stores only "read-only", which fsproto does not map),
        so ``cp -p``, ``rsync -a`` and editors keep working.
        """
        return ((uid is not None and uid != self.uid) or (gid is not None and gid != self.gid)
                or (mode is not None and mode & 0o7777 & ~0o777 != 0))

    def libfuse_options(self) -> set[str]:
        """The option strings handed to ``pyfuse3.init``."""
        opts = {f"fsname={self.fsname or 'fsproto'}"}
        if self.subtype:
            opts.add(f"subtype={self.subtype}")
        if self.allow_other:
            opts.add("allow_other")
        if self.checks_permissions:
            opts.add("default_permissions")
        if self.read_only:
            opts.add("ro")
        return opts


_FLAGS = {
    "allow_other": "allow_other",
    "default_permissions": "default_permissions",
    "ro": "read_only",
    "keep_cache": "keep_cache",
    "direct_io": "direct_io",
    "writeback_cache": "writeback_cache",
}
_NEGATED = {"rw": "read_only", "no_keep_cache": "keep_cache", "no_default_permissions": "default_permissions",
            "no_writeback_cache": "writeback_cache", "noxattr": "xattr"}
_STRINGS = {"fsname", "subtype"}
# No max_read=: libfuse refuses it unless init() sets the same conn->max_read, which pyfuse3
# does not; reads are sized by read-ahead (read_ahead_kb=) or direct_io instead.
_INTS = {"uid": 10, "gid": 10, "umask": 8, "fmask": 8, "dmask": 8, "read_ahead_kb": 10}
_MASKS = {"umask", "fmask", "dmask"}
_FLOATS = {"attr_timeout", "entry_timeout"}
KNOWN = sorted([*_FLAGS, *_NEGATED, *_STRINGS, *_INTS, *_FLOATS])


def parse_options(items: list[str] | tuple[str, ...], base: MountOptions | None = None) -> MountOptions:
    """Apply ``-o`` lists (each ``a,b=c,...``) on top of *base*.

    Raises UsageError for an unknown option or a bad value.
    """
    opts = base or MountOptions()
    changes: dict[str, object] = {}
    for item in items:
        for word in filter(None, (w.strip() for w in item.split(","))):
            key, eq, value = word.partition("=")
            try:
                if key in _FLAGS and not eq:
                    changes[_FLAGS[key]] = True
                elif key in _NEGATED and not eq:
                    changes[_NEGATED[key]] = False
                elif key in _STRINGS and eq and value and "," not in value:
                    changes[key] = value
                elif key in _INTS and eq:
                    number = int(value, _INTS[key])
                    if number < 0 or (key in _MASKS and number > 0o777):
                        raise ValueError(value)
                    changes[key] = number
                    if key == "umask":  # kernel vfat: umask= sets both masks (the last one given wins)
                        changes["fmask"] = changes["dmask"] = None
                elif key in _FLOATS and eq:
                    seconds = float(value)
                    if not 0 <= seconds <= 86400:
                        raise ValueError(value)
                    changes[key] = seconds
                else:
                    raise UsageError(f"unknown mount option {word!r}; known: {', '.join(KNOWN)}")
            except ValueError:
                raise UsageError(f"bad value in mount option {word!r}") from None
    return replace(opts, **changes)  # type: ignore[arg-type]
