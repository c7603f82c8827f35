"""Test harnesses that check fsproto against other implementations (see :mod:`.cmsref`).

Nothing here is imported by fsproto itself; tests and ``tools/`` use it.
"""
