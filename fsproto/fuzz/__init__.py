"""Coverage-guided fuzzing of the parsers (``fsproto fuzz``), with atheris (libFuzzer for Python).

:mod:`.targets` holds one target per registered format (probe, open, walk, reads, fsck: the
code a hostile image reaches) plus ``mbr``, ``gpt`` and ``nvme`` (completion entries and
Identify data); :mod:`.corpus` builds the seed corpus; :mod:`.harness` is the process that
runs libFuzzer (it never returns, so the CLI starts it as a child and reads its statistics).

A crash is any exception that is not an :class:`fsproto.errors.FsprotoError`, a case over the
time limit, or one over the memory limit; libFuzzer writes it to ``crash-<sha1>`` /
``timeout-<sha1>`` / ``oom-<sha1>`` in the output directory.
"""
