"""Property tests: random operation sequences against a plain dict model (fsx-style, good_buf).

After every sequence fsck finds nothing at all, and every file reads back equal, before and
after reopening the volume.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsproto.errors import AlreadyExists, NotFound
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import MemoryDevice

NAMES = [f"/F{i}.DATA" for i in range(14)]

op = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMES)),
    st.tuples(st.just("createf"), st.sampled_from(NAMES), st.sampled_from([1, 7, 80, 700])),
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.integers(0, 9000),
              st.sampled_from([1, 3, 100, 513, 4096, 70000])),
    st.tuples(st.just("truncate"), st.sampled_from(NAMES), st.integers(0, 12000)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("reopen"),),
)


def _fill(n: int, seed: int) -> bytes:
    return bytes((seed * 131 + i * 7) & 0xFF or 1 for i in range(n))


def _pad(buf: bytearray, lrecl: int) -> None:
    if lrecl and len(buf) % lrecl:
        buf.extend(bytes(lrecl - len(buf) % lrecl))


def run_ops(bs: int, ops: list) -> None:
    dev = MemoryDevice(num_blocks=(3 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=bs, label="MODEL")
    fs = FORMAT.open(dev)
    model: dict[str, bytearray] = {}
    lrecls: dict[str, int] = {}
    for n, o in enumerate(ops):
        kind = o[0]
        if kind in ("create", "createf"):
            name = o[1]
            if name in model:
                with pytest.raises(AlreadyExists):
                    fs.create(name)
                continue
            fs.create(name)
            model[name] = bytearray()
            lrecls[name] = 0
            if kind == "createf":
                fs.setxattr(name, "user.record_format", b"F")
                fs.setxattr(name, "user.record_lrecl", str(o[2]).encode())
                lrecls[name] = o[2]
        elif kind == "write":
            _, name, off, size = o
            data = _fill(size, n)
            if name not in model:
                with pytest.raises(NotFound):
                    fs.write(name, off, data)
                continue
            assert fs.write(name, off, data) == size
            buf = model[name]
            if off > len(buf):
                buf.extend(bytes(off - len(buf)))
            buf[off : off + size] = data
            _pad(buf, lrecls[name])
        elif kind == "truncate":
            _, name, size = o
            if name not in model:
                continue
            fs.truncate(name, size)
            buf = model[name]
            if size <= len(buf):
                del buf[size:]
            else:
                buf.extend(bytes(size - len(buf)))
            _pad(buf, lrecls[name])
        elif kind == "unlink":
            name = o[1]
            if name not in model:
                with pytest.raises(NotFound):
                    fs.unlink(name)
                continue
            fs.unlink(name)
            del model[name], lrecls[name]
        elif kind == "rename":
            _, a, b = o
            if a not in model:
                continue
            fs.rename(a, b)
            if a != b:
                model[b] = model.pop(a)
                lrecls[b] = lrecls.pop(a)
        elif kind == "reopen":
            fs.close()
            fs = FORMAT.open(dev)
        for name, buf in model.items():
            assert fs.stat(name).size == len(buf), (n, o, name)
    _check(fs, model)
    fs.close()
    report = FORMAT.fsck(dev)
    assert report.problems == [], [str(p) for p in report.problems]
    _check(FORMAT.open(dev), model)


def _check(fs, model: dict[str, bytearray]) -> None:
    assert sorted("/" + st.name for st in fs.listdir("/")) == sorted(model)
    for name, buf in model.items():
        assert fs.read(name, 0, len(buf) + 10) == bytes(buf), name
        if len(buf) > 10:
            mid = len(buf) // 2
            assert fs.read(name, mid - 3, 4000) == bytes(buf[mid - 3 : mid - 3 + 4000])


@pytest.mark.parametrize("bs", [512, 4096])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=60))
def test_random_ops_match_model(bs: int, ops: list) -> None:
    run_ops(bs, ops)


def test_directory_grows_and_shrinks_through_levels() -> None:
    """512-byte blocks: 8 FSTs per block; 1100 files need a 2-level directory tree."""
    dev = MemoryDevice(num_blocks=(4 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=512, label="GROW")
    fs = FORMAT.open(dev)
    names = [f"/N{i:05}.X" for i in range(1100)]
    for i, name in enumerate(names):
        fs.create(name)
        if i % 97 == 0:
            fs.write(name, 0, name.encode())
    assert fs.dir.tree.levels == 2
    assert FORMAT.fsck(dev).problems == []
    for name in names[::2] + names[1::2][:-3]:
        fs.unlink(name)
    assert sorted("/" + s.name for s in fs.listdir()) == sorted(names[1::2][-3:])
    assert fs.dir.tree.levels == 0
    assert FORMAT.fsck(dev).problems == []
    fresh = MemoryDevice(num_blocks=(4 << 20) // 512, block_size=512)
    FORMAT.mkfs(fresh, block_size=512, label="GROW")
    # Every block of the grown directory came back: usage equals a fresh disk plus 3 empty files.
    assert FORMAT.open(dev).amap.used == FORMAT.open(fresh).amap.used


line = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\n\r\x85\x15"), max_size=90)


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(line, max_size=30), recfm=st.sampled_from(["V", "F"]), cp=st.sampled_from(["cp1047", "cp037"]),
       piece=st.integers(1, 50))
def test_text_view_round_trip(lines: list[str], recfm: str, cp: str, piece: int) -> None:
    """Lines written through the text view in pieces read back as records -> lines (canonical form)."""
    dev = MemoryDevice(num_blocks=2048, block_size=512)
    FORMAT.mkfs(dev, block_size=1024, label="TEXT")
    fs = FORMAT.open(dev, text=True, codepage=cp)
    fs.create("/T.TEXT")
    if recfm == "F":
        fs.setxattr("/T.TEXT", "user.record_format", b"F")
        fs.setxattr("/T.TEXT", "user.record_lrecl", b"90")
    data = "".join(x + "\n" for x in lines).encode()
    for i in range(0, len(data), piece):
        fs.write("/T.TEXT", i, data[i : i + piece])
    assert fs.read("/T.TEXT", 0, 1 << 20) == data
    want = [(x.ljust(90) if recfm == "F" else (x or " ")) + "\n" for x in lines]
    assert FORMAT.open(dev, text=True, codepage=cp).read("/T.TEXT", 0, 1 << 20) == "".join(want).encode()
    assert FORMAT.fsck(dev).problems == []


@pytest.mark.parametrize("bs,seed", [(512, 11), (4096, 12)])
def test_fsx_single_file(bs: int, seed: int) -> None:
    """fsx-style: one file, writes anywhere (up to 200 KB), truncates up and down, reopens, reads
    checked against a bytearray (good_buf); crosses pointer-tree level changes at 512."""
    import random

    rng = random.Random(seed)
    dev = MemoryDevice(num_blocks=(16 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=bs, label="FSX")
    fs = FORMAT.open(dev)
    fs.create("/FSX.DATA")
    good = bytearray()
    for i in range(300):
        r = rng.random()
        if r < 0.45:
            off, n = rng.randint(0, 2_000_000), rng.randint(1, 200_000)
            data = rng.randbytes(n)
            fs.write("/FSX.DATA", off, data)
            if off > len(good):
                good.extend(bytes(off - len(good)))
            good[off : off + n] = data
        elif r < 0.6:
            size = rng.randint(0, 2_000_000)
            fs.truncate("/FSX.DATA", size)
            del good[size:]
            good.extend(bytes(size - len(good)))
        elif r < 0.65:
            fs.close()
            fs = FORMAT.open(dev)
        else:
            off, n = rng.randint(0, len(good)), rng.randint(0, 300_000)
            assert fs.read("/FSX.DATA", off, n) == bytes(good[off : off + n]), (i, off, n)
        assert fs.stat("/FSX.DATA").size == len(good), i
    assert FORMAT.open(dev).read("/FSX.DATA", 0, len(good)) == bytes(good)
    assert FORMAT.fsck(dev).problems == []
