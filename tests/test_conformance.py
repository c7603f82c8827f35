"""The shipped conformance suite (fsproto.testing.conformance) run for every format here:
FAT12, FAT16, FAT32, the tutorial format (fsproto/formats/tutorial.py) and CMS."""

from __future__ import annotations

import pytest

from fsproto.formats.cms import FORMAT as CMS
from fsproto.formats.fat import FORMAT as FAT
from fsproto.formats.tutorial import FORMAT as TINY
from fsproto.testing.conformance import ConformanceTests, FormatUnderTest

FAT_NAMES = ("Alpha.txt", "beta file.bin", "GAMMA.DAT", "a long name for delta.text", "e")


class TestFat12(ConformanceTests):
    fut = FormatUnderTest(FAT, "fat12", FAT_NAMES, mkfs_options={"fat": 12}, device_bytes=4 << 20,
                          directories=True, metadata_bytes=48 << 10)


class TestFat16(ConformanceTests):
    fut = FormatUnderTest(FAT, "fat16", FAT_NAMES, mkfs_options={"fat": 16}, device_bytes=16 << 20,
                          directories=True, metadata_bytes=96 << 10)


class TestFat16Sectors4K(ConformanceTests):
    """A 4096-byte-block device: mkfs makes 4096-byte FAT sectors."""

    fut = FormatUnderTest(FAT, "fat16-4k", FAT_NAMES, mkfs_options={"fat": 16}, device_bytes=40 << 20,
                          device_block_size=4096, directories=True, metadata_bytes=128 << 10)


class TestFat32(ConformanceTests):
    fut = FormatUnderTest(FAT, "fat32", FAT_NAMES, mkfs_options={"fat": 32}, device_bytes=36 << 20,
                          directories=True, metadata_bytes=640 << 10)


class TestTutorial(ConformanceTests):
    fut = FormatUnderTest(TINY, "tiny", ("alpha.txt", "Beta", "gamma.bin", "delta file", "e"), device_bytes=4 << 20)


class TestCms(ConformanceTests):
    fut = FormatUnderTest(CMS, "cms", ("ALPHA.DATA", "BETA.FILE", "GAMMA.BIN", "DELTA.TEXT", "E.X"),
                          mkfs_options={"block_size": 4096}, device_bytes=8 << 20)


ALL = [TestFat12.fut, TestFat16.fut, TestFat32.fut, TestTutorial.fut, TestCms.fut]


@pytest.mark.parametrize("fut", ALL, ids=[f.id for f in ALL])
def test_each_fresh_image_is_recognised_by_its_own_format_only(fut: FormatUnderTest) -> None:
    dev = fut.fresh()
    others = {f.format for f in ALL} - {fut.format}
    assert fut.format.probe(dev)
    assert [f.name for f in others if f.probe(dev)] == []
