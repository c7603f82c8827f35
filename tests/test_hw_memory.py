"""DMA memory on this machine, as root: malloc/free, pagemap, vir2phys, the zero page, mpin, fork.

hardware.md 2.1/2.2: a written page has a private, stable PFN; a read-only-touched anonymous
page maps the shared zero page; PFNs read 0 without CAP_SYS_ADMIN; MAP_SHARED/MADV_DONTFORK
buffers keep their PFN when the process forks and the parent writes.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import os
import shutil
import subprocess
import sys

import pytest

from fsproto.errors import AccessDenied, HardwareError, RegionOutOfRange, UnbackedMemory, UsageError
from fsproto.hw import free, malloc, mpin, munpin, pagemap, vir2phys
from fsproto.hw.memory import PAGE, zero_page_pfn

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PFNs are only visible with CAP_SYS_ADMIN (run as root)")


def _private_page() -> tuple[_mmap.mmap, int]:
    m = _mmap.mmap(-1, PAGE, flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS)
    c = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(c)
    del c
    return m, addr


def test_malloc_gives_written_present_pages_with_stable_pfns():
    buf = malloc(3 * PAGE)
    try:
        assert buf.size == 3 * PAGE and buf.read(0, buf.size) == bytes(buf.size)
        phys = [buf.device_addr(o) for o in range(0, buf.size, PAGE)]
        assert all(p % PAGE == 0 and p > 0 for p in phys)
        assert len(set(phys)) == 3  # three distinct private pages
        assert zero_page_pfn() not in {p // PAGE for p in phys}
        buf.write(5, b"data")
        buf.region.w32(PAGE + 8, 0xCAFEF00D)
        assert [buf.device_addr(o) for o in range(0, buf.size, PAGE)] == phys  # stable after writes
        assert buf.device_addr(5) == phys[0] + 5
        info = pagemap(buf.addr)
        assert info.present and not info.swapped and info.pfn == phys[0] // PAGE
    finally:
        free(buf)


def test_zero_page_and_untouched_pages_are_refused():
    m, addr = _private_page()
    try:
        with pytest.raises(UnbackedMemory, match="not present"):
            vir2phys(addr)
        _ = m[0]  # read fault: the shared zero page
        assert pagemap(addr).present and pagemap(addr).pfn == zero_page_pfn()
        with pytest.raises(UnbackedMemory, match="zero page"):
            vir2phys(addr)
        m[0] = 1  # write fault: a private page
        assert vir2phys(addr) // PAGE not in (0, zero_page_pfn())
        assert pagemap(addr).exclusive
    finally:
        m.close()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_pfn_zero_without_cap_sys_admin_names_the_capability():
    code = (
        "from fsproto.hw import malloc, vir2phys\n"
        "from fsproto.errors import AccessDenied\n"
        "b = malloc(4096)\n"
        "try:\n    vir2phys(b.addr)\nexcept AccessDenied as e:\n    print('DENIED', e)\n"
    )
    out = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.returncode == 0, out.stderr
    assert "DENIED" in out.stdout and "CAP_SYS_ADMIN" in out.stdout


def test_free_with_live_views_never_faults_and_releases_pages():
    buf = malloc(2 * PAGE)
    buf.write(0, b"secret")
    stale = buf.view[0:16]  # a view the caller kept
    buf.free()
    buf.free()  # idempotent
    assert bytes(stale[:6]) == b"\0" * 6  # fresh unshared memory, not the old data, no SIGSEGV
    stale[0] = 1  # writable, harmless
    for call in (lambda: buf.read(0, 4), lambda: buf.region.r32(0), lambda: buf.device_addr(0)):
        with pytest.raises(HardwareError):
            call()
    del stale


def test_free_without_views_unmaps_at_once():
    buf = malloc(PAGE)
    addr = buf.addr
    buf.free()
    assert not pagemap(addr).present  # the range is gone (or at least holds no page)


def test_buffer_bounds_and_bad_sizes():
    with pytest.raises(UsageError):
        malloc(0)
    with pytest.raises(UsageError):
        malloc(-5)
    buf = malloc(100)
    try:
        assert buf.size == PAGE  # rounded to pages
        with pytest.raises(RegionOutOfRange):
            buf.device_addr(PAGE)
        with pytest.raises(RegionOutOfRange):
            buf.write(PAGE - 2, b"abc")
    finally:
        buf.free()


def test_mpin_locks_pages_and_munpin_unlocks():
    buf = malloc(2 * PAGE)
    try:
        def locked_kb() -> int:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmLck:"))

        before = locked_kb()
        mpin(buf)
        assert locked_kb() >= before + 2 * PAGE // 1024
        munpin(buf)
        assert locked_kb() == before
        with pytest.raises(UsageError):
            mpin(buf.addr)  # an address needs a size
    finally:
        buf.free()


def test_mpin_over_the_memlock_limit_names_the_limit():
    code = (
        "import resource\n"
        "from fsproto.hw import malloc, mpin\n"
        "from fsproto.errors import AccessDenied\n"
        "resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))\n"
        "b = malloc(1 << 20, huge=False)\n"
        "try:\n    mpin(b)\nexcept AccessDenied as e:\n    print('DENIED', e)\n"
    )
    out = subprocess.run(
        ["setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.returncode == 0, out.stderr
    assert "DENIED" in out.stdout and "RLIMIT_MEMLOCK" in out.stdout


def test_pfn_survives_fork_and_parent_write():
    # The measured fork hazard (2.2): private+populate pages move when the parent writes while a
    # child is alive; our shared + DONTFORK buffers must not.
    buf = malloc(PAGE)
    try:
        before = buf.device_addr(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: hold the address space until the parent has written
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        try:
            buf.write(0, b"parent writes while the child lives")
            assert buf.device_addr(0) == before
        finally:
            os.write(w, b"x")
            os.close(w)
            os.waitpid(pid, 0)
    finally:
        buf.free()


def test_hugetlb_request_without_reserved_pages_says_what_to_do():
    from fsproto.hw.memory import hugepages_free

    if hugepages_free():
        buf = malloc(2 << 20, huge=True)
        try:
            assert buf.huge and buf.contiguous()
        finally:
            buf.free()
    else:
        with pytest.raises(HardwareError, match="nr_hugepages"):
            malloc(2 << 20, huge=True)
        assert not malloc(2 << 20).huge  # auto falls back to 4 KiB pages


def test_pagemap_rejects_bad_addresses():
    with pytest.raises(UsageError):
        pagemap(-1)
    with pytest.raises(UnbackedMemory):
        vir2phys(1 << 46)  # nothing is mapped there
