"""The inode table: lookup counts, forget, open handles, detach and rename (no mount needed)."""

from __future__ import annotations

import pytest

from fsproto.mount.inodes import ROOT_INODE, InodeTable, StaleInode


def test_lookup_and_forget_drop_the_entry_only_at_zero():
    t = InodeTable()
    a = t.lookup("/A")
    assert t.lookup("/A") == a and t.lookups(a) == 2
    t.forget(a, 1)
    assert t.path(a) == "/A"
    t.forget(a, 1)
    assert a not in t and t.inode_of("/A") is None


def test_root_is_never_forgotten():
    t = InodeTable()
    t.forget(ROOT_INODE, 10)
    assert t.path(ROOT_INODE) == "/"


def test_open_handle_keeps_inode_past_forget():
    t = InodeTable()
    a = t.lookup("/A")
    t.open(a)
    t.forget(a, 1)
    assert t.path(a) == "/A"
    t.release(a)
    assert a not in t


def test_numbers_are_never_reused():
    t = InodeTable()
    seen = set()
    for _ in range(100):
        ino = t.lookup("/X")
        assert ino not in seen
        seen.add(ino)
        t.forget(ino, 1)


def test_detach_makes_inode_stale_and_new_file_gets_new_number():
    t = InodeTable()
    a = t.lookup("/A")
    t.detach("/A")
    with pytest.raises(StaleInode):
        t.path(a)
    b = t.lookup("/A")
    assert b != a and t.path(b) == "/A"
    t.forget(a, 1)
    assert a not in t and t.path(b) == "/A"


def test_rename_replaces_target_and_moves_descendants():
    t = InodeTable()
    d = t.lookup("/d")
    f = t.lookup("/d/f")
    g = t.lookup("/d/sub/g")
    other = t.lookup("/dd/x")  # shares a prefix, must not move
    victim = t.lookup("/e")
    t.rename("/d", "/e")
    assert t.path(d) == "/e" and t.path(f) == "/e/f" and t.path(g) == "/e/sub/g"
    assert t.path(other) == "/dd/x"
    with pytest.raises(StaleInode):
        t.path(victim)
    assert t.inode_of("/d") is None and t.inode_of("/d/f") is None


def test_rename_onto_itself_keeps_the_inode():
    t = InodeTable()
    a = t.lookup("/A")
    t.rename("/A", "/A")
    assert t.path(a) == "/A"


def test_readdir_reference_unsent_entry_is_dropped():
    t = InodeTable()
    a = t.ensure("/A")
    t.drop_unreferenced(a)
    assert a not in t
    b = t.ensure("/B")
    t.add_lookup(b)
    t.drop_unreferenced(b)
    assert t.path(b) == "/B"


def test_orphan_keeps_the_number_until_buried():
    t = InodeTable()
    a = t.lookup("/A")
    t.open(a)
    t.orphan(a, "/\0orphan.1")
    assert t.is_orphan(a) and t.path(a) == "/\0orphan.1" and t.inode_of("/A") is None
    b = t.lookup("/A")  # a new file of the same name gets a new number
    assert b != a
    t.forget(a, 1)
    t.release(a)
    assert a in t  # still an orphan: the adapter frees its blocks, then buries it
    t.bury(a)
    assert a not in t
    assert t.path(b) == "/A"


def test_exchange_swaps_paths_and_descendants():
    t = InodeTable()
    a, b, c = t.lookup("/A"), t.lookup("/B"), t.lookup("/A/C")
    t.exchange("/A", "/B")
    assert (t.path(a), t.path(b), t.path(c)) == ("/B", "/A", "/B/C")
    assert t.inode_of("/A") == b and t.inode_of("/B") == a
