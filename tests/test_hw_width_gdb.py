"""Width-exactness of Region over host memory, measured the way hardware.md 2.6 did: a hardware
access watchpoint on the word, counting the instructions that touch it per Python operation.

The memoryview-cast guarantee is empirical per CPython build (the spec says to re-check it on
each supported Python/arch in CI); this is that check. Negative controls -- a slice store and a
ctypes setter -- must show two accesses, which proves the method can see a split access.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb (tools/setup.sh installs it)"),
    pytest.mark.skipif(sys.platform != "linux", reason="Linux only"),
    pytest.mark.timeout(180),
]

# (label, statement run in the inferior, accesses expected)
OPERATIONS = [
    ("r8", "r.r8(64)", 1),
    ("w8", "r.w8(64, 0x5a)", 1),
    ("r16", "r.r16(64)", 1),
    ("w16", "r.w16(64, 0x1234)", 1),
    ("r32", "r.r32(64)", 1),
    ("w32", "r.w32(64, 0x11223344)", 1),
    ("r64", "r.r64(64)", 1),
    ("w64", "r.w64(64, 0x0102030405060708)", 1),
    ("be-w32", "be.w32(64, 0xAABBCCDD)", 1),
    ("be-r64", "be.r64(64)", 1),
    ("peek32", "r.peek(64, 32)", 1),
    ("w64_lh", "r.w64_lh(64, 7)", 2),  # by design: two 32-bit stores
    ("control-slice-store", "raw[64:68] = b'abcd'", 2),  # glibc memmove: first word + last word
    ("control-ctypes-setter", "cword.value = 9", 2),  # ctypes I_set: load, then store
]

INFERIOR = """
import ctypes, signal, sys
sys.path.insert(0, {root!r})
from fsproto.hw import mmap
r = mmap(None, 4096, writable=True)
be = r.sub(0, 4096, big_endian=True)
raw = memoryview(r.backend._map)
cword = ctypes.c_uint32.from_buffer(r.backend._map, 64)
addr = ctypes.addressof(cword)
open({addr_file!r}, "w").write(hex(addr))
signal.raise_signal(signal.SIGTRAP)
{body}
"""

DRIVER = """
import gdb
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("handle SIGTRAP stop print nopass")
stops = []
def on_stop(ev):
    stops.append("hit" if isinstance(ev, gdb.BreakpointEvent) else "signal")
gdb.events.stop.connect(on_stop)
gdb.execute("run")
addr = open({addr_file!r}).read()
try:
    gdb.execute("awatch *(long*)" + addr)
except gdb.error as e:
    print("NOWATCH", e)
    gdb.execute("kill")
    raise SystemExit
for label in {labels!r}:
    hits = 0
    while True:
        stops.clear()
        gdb.execute("continue", to_string=True)
        if "signal" in stops:
            break
        hits += stops.count("hit")
    print("RESULT", label, hits)
gdb.execute("kill")
"""


def test_each_access_touches_the_word_exactly_as_often_as_expected(tmp_path):
    addr_file = str(tmp_path / "addr")
    body = "\n".join(f"{stmt}\nsignal.raise_signal(signal.SIGTRAP)" for _label, stmt, _n in OPERATIONS)
    (tmp_path / "inferior.py").write_text(INFERIOR.format(root=str(Path(__file__).resolve().parent.parent), addr_file=addr_file, body=body))
    labels = [label for label, _stmt, _n in OPERATIONS]
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER.format(addr_file=addr_file, labels=labels)))
    python = __import__("os").path.realpath(sys.executable)
    out = subprocess.run(
        ["gdb", "-q", "-batch", "-nx", "-x", str(tmp_path / "driver.py"), "--args", python, str(tmp_path / "inferior.py")],
        capture_output=True, text=True, timeout=150,
    )
    if "NOWATCH" in out.stdout:
        pytest.skip("no hardware watchpoints on this machine: " + out.stdout.split("NOWATCH", 1)[1].strip())
    results = {}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            _, label, hits = line.split()
            results[label] = int(hits)
    assert results == {label: n for label, _stmt, n in OPERATIONS}, out.stdout[-2000:] + out.stderr[-2000:]
