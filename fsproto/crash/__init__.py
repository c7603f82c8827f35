"""Crash-state exploration for any registered format (``fsproto crashcheck``).

A workload (:mod:`.workload`) drives a :class:`fsproto.vfs.Filesystem` while a
:class:`.record.RecordingDevice` keeps every write's bytes and every flush; :mod:`.states`
rebuilds the disks a power cut could leave (each prefix of the write stream; any subset of the
writes since the last flush, as a volatile write cache may persist them; torn multi-block
writes); :mod:`.check` runs the format's fsck on each (read-only, then ``repair`` on a copy)
and the workload's own assertions. No kernel module and no mount: everything is in user space,
in the spirit of CrashMonkey (Mohan et al., OSDI 2018) and ALICE (Pillai et al., OSDI 2014).

Limits: flush is a whole-device barrier (the VFS has no per-file fsync), so "fsync'd" means
"completed before a flush"; states are bounded by ``max_states`` and sampled with a seed past it.
"""
