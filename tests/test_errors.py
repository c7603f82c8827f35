"""The error hierarchy: builtin compatibility, errno table, one-line messages, exit statuses."""

from __future__ import annotations

import errno

import pytest

from fsproto import errors


def test_not_found_is_a_builtin_file_not_found():
    with pytest.raises(FileNotFoundError):
        raise errors.NotFound("no such file", device="x.img")
    with pytest.raises(FileNotFoundError):
        raise errors.DeviceNotFound("missing", device="x.img")
    with pytest.raises(FileExistsError):
        raise errors.AlreadyExists("exists")


@pytest.mark.parametrize(
    "exc, code",
    [
        (errors.NotFound("x"), errno.ENOENT),
        (errors.AlreadyExists("x"), errno.EEXIST),
        (errors.NoSpace("x"), errno.ENOSPC),
        (errors.ReadOnlyError("x"), errno.EROFS),
        (errors.FsReadOnly("x"), errno.EROFS),
        (errors.NameTooLong("x"), errno.ENAMETOOLONG),
        (errors.InvalidName("x"), errno.EINVAL),
        (errors.FileTooBig("x"), errno.EFBIG),
        (errors.NotPermitted("x"), errno.EPERM),
        (errors.DeviceBusy("x"), errno.EBUSY),
        (errors.FormatError("x", block=7), errno.EIO),
        (ValueError("not ours"), errno.EIO),
        (OSError(errno.EACCES, "denied"), errno.EACCES),
    ],
)
def test_errno_table(exc, code):
    assert errors.errno_for(exc) == code


def test_message_names_device_block_and_offset():
    e = errors.FormatError("pointer loops", device="disk.img", block=42, offset=12, struct="FST")
    assert str(e) == "disk.img, block 42, offset 12, FST: pointer loops"
    assert str(errors.OutOfRange("past the end", device="d", lba=9)) == "d, lba 9: past the end"


def test_exit_statuses():
    assert errors.exit_status_for(errors.UsageError("x")) == errors.EXIT_USAGE
    assert errors.exit_status_for(errors.FormatError("x")) == errors.EXIT_UNCORRECTED
    assert errors.exit_status_for(errors.DeviceError("x")) == errors.EXIT_OPERATIONAL


def test_every_error_shares_one_base():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, errors.FsprotoError), name
