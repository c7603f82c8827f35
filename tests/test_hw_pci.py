"""This machine's real PCI functions, read-only; and the refusals that protect the root disk.

Everything read through fsproto's config Region is checked against an independent kernel source
(sysfs ``vendor``/``device``/``class`` attributes, ``/proc/iomem``). The root filesystem's disk is a
virtio-blk PCI function here: mapping, poking and rebinding it must be refused without force,
and the forced write paths are exercised only in dry-run -- no test writes to a real device.
"""

from __future__ import annotations

import os

import pytest

from fsproto.errors import DeviceOwned, FormatError, HardwareNotFound, UsageError
from fsproto.hw import mmap, pci
from fsproto.hw.backends import FakeBackend
from fsproto.hw.pci import PciFunction, SysfsPci, devices, normalize_bdf
from fsproto.hw.region import Region
from fsproto.hw.safety import ownership

SYSFS = "/sys/bus/pci/devices"
pytestmark = pytest.mark.skipif(not os.path.isdir(SYSFS) or not os.listdir(SYSFS), reason="no PCI bus")


def _attr(bdf: str, name: str) -> int:
    with open(f"{SYSFS}/{bdf}/{name}") as f:
        return int(f.read(), 16)


def root_disk_function() -> str | None:
    """The PCI function under the block device mounted at / (found without fsproto's code)."""
    st = os.stat("/")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    link = f"/sys/dev/block/{major}:{minor}"
    if not os.path.exists(link):
        return None
    path = os.path.realpath(link)
    if os.path.exists(os.path.join(path, "partition")):
        path = os.path.dirname(path)
    for part in reversed(path.split("/")):
        if len(part) == 12 and part[4] == ":" and os.path.isdir(f"{SYSFS}/{part}"):
            return part
    return None


ROOT_BDF = root_disk_function()
needs_root_disk = pytest.mark.skipif(ROOT_BDF is None, reason="the root filesystem is not on a PCI function here")


def test_enumeration_matches_sysfs_and_ids_match_kernel_attributes():
    found = devices()
    assert [d.bdf for d in found] == sorted(os.listdir(SYSFS))
    for dev in found:
        assert dev.vendor_id == _attr(dev.bdf, "vendor")
        assert dev.device_id == _attr(dev.bdf, "device")
        assert dev.class_code == _attr(dev.bdf, "class")
        assert dev.regs.SUBSYSTEM_VENDOR_ID == _attr(dev.bdf, "subsystem_vendor")
        assert not dev.config.writable
        dev.close()


def test_bars_match_proc_iomem():
    with open("/proc/iomem") as f:
        iomem = f.read()
    checked = 0
    for dev in devices():
        for bar in dev.bars():
            if not bar.is_io:
                line = f"{bar.start:x}-{bar.start + bar.size - 1:x} : {dev.bdf}"
                assert line in iomem, line
                checked += 1
        dev.close()
    if not checked:
        pytest.skip("no memory BARs on this machine")


def test_capability_walk_finds_msix_where_the_kernel_uses_msi():
    walked = 0
    for dev in devices():
        caps = dev.capabilities()
        offsets = [c.offset for c in caps]
        assert len(offsets) == len(set(offsets)) and all(o >= 0x40 for o in offsets)
        if os.path.isdir(f"{SYSFS}/{dev.bdf}/msi_irqs"):
            assert any(c.name in ("msi", "msi-x") for c in caps), dev.bdf
            walked += 1
        dev.close()
    if not walked:
        pytest.skip("no device with MSI here")


def test_broken_capability_chain_is_a_typed_error():
    fake = FakeBackend(256)
    fake.poke_raw(0x06, 2, 0x0010)  # STATUS.CAP_LIST
    fake.poke_raw(0x34, 1, 0x40)
    fake.poke_raw(0x40, 2, 0x4011)  # MSI-X whose next pointer is itself
    with pytest.raises(FormatError, match="broken"):
        PciFunction("fake", Region(fake)).capabilities()


def test_bdf_parsing_and_missing_device():
    assert normalize_bdf("00:1F.2") == "0000:00:1f.2"
    with pytest.raises(UsageError):
        normalize_bdf("1f.2")
    with pytest.raises(HardwareNotFound, match="pci ls"):
        SysfsPci("00:1e.7")


@needs_root_disk
def test_root_disk_is_reported_as_owned_and_mounted():
    own = ownership(ROOT_BDF)
    assert own.owned and own.kernel_owned
    assert any(m.startswith("/ (") for m in own.mounts)


@needs_root_disk
def test_root_disk_refuses_map_poke_config_write_and_rebind():
    dev = SysfsPci(ROOT_BDF)
    with pytest.raises(DeviceOwned, match="mounted /"):
        dev.map_bar(dev.bars()[0].index, writable=True)
    with pytest.raises(DeviceOwned):
        mmap(f"{SYSFS}/{ROOT_BDF}/resource0", writable=True)
    with pytest.raises(DeviceOwned):
        SysfsPci(ROOT_BDF, writable=True)
    with pytest.raises(DeviceOwned, match="force"):
        dev.rebind("uio_pci_generic")
    with pytest.raises(DeviceOwned):
        dev.unbind()
    with pytest.raises(DeviceOwned):
        pci(ROOT_BDF, writable=True)
    assert dev.driver is not None  # still bound


@needs_root_disk
def test_forced_writes_in_dry_run_are_logged_and_change_nothing():
    with open(f"{SYSFS}/{ROOT_BDF}/config", "rb") as f:
        config_before = f.read()
    with open(f"{SYSFS}/{ROOT_BDF}/driver_override") as f:
        override_before = f.read()
    driver_before = os.readlink(f"{SYSFS}/{ROOT_BDF}/driver")
    dev = SysfsPci(ROOT_BDF, writable=True, force=True, dry_run=True)
    command = int(dev.regs.COMMAND)
    dev.enable_bus_master()
    dev.regs.set("COMMAND", MEM=0)
    assert [(e.offset, e.width, e.value) for e in dev.config.log] == [(4, 2, command | 4), (4, 2, command & ~2)]
    steps = dev.rebind("uio_pci_generic")
    assert steps[0] == f"echo uio_pci_generic > {SYSFS}/{ROOT_BDF}/driver_override"
    assert any("unbind" in s for s in steps) and steps[-1].endswith("drivers_probe")
    with open(f"{SYSFS}/{ROOT_BDF}/config", "rb") as f:
        assert f.read() == config_before
    with open(f"{SYSFS}/{ROOT_BDF}/driver_override") as f:
        assert f.read() == override_before
    assert os.readlink(f"{SYSFS}/{ROOT_BDF}/driver") == driver_before


def test_free_function_passes_the_check():
    free = [d.bdf for d in devices() if not ownership(d.bdf).owned]
    if not free:
        pytest.skip("every function here is owned")
    from fsproto.hw.safety import check

    own = check(free[0], "map BAR0 of")  # no DeviceOwned, nothing touched
    assert not own.owned and own.reason() == "free"


def _root_block_node() -> str | None:
    """The device node mounted at / (from mountinfo), if it is a block device with that number."""
    import stat

    st = os.stat("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/" and " - " in line:
                source = line.split(" - ", 1)[1].split()[1]
                try:
                    node = os.stat(source)
                except OSError:
                    return None
                if stat.S_ISBLK(node.st_mode) and node.st_rdev == st.st_dev:
                    return source
    return None


@pytest.mark.skipif(_root_block_node() is None, reason="the root filesystem is not on a block device node here")
def test_writable_mapping_of_the_mounted_root_disk_is_refused(capsys):
    from fsproto.cli import cli

    node = _root_block_node()
    with pytest.raises(DeviceOwned, match="backs /"):
        mmap(node, 4096, writable=True)
    with pytest.raises(DeviceOwned):
        mmap(node, 4096, writable=True, dry_run=True)
    assert cli(["poke", node, "0", "0"]) == 8
    assert "refusing" in capsys.readouterr().err
