"""MemFS: a small, correct, nested in-memory :class:`fsproto.vfs.Filesystem` for adapter tests.

Also :data:`MEMIMG`, a test-only :class:`~fsproto.formats.base.Format` that keeps a MemFS in a
block device (a JSON snapshot with a CRC), so the real ``fsproto mount`` CLI can be driven
before any production format exists, including persistence across remounts and corrupt images.

Fault injection for the adapter's error handling: reading a file whose name starts with
``boom`` raises a plain ``RuntimeError`` (a bug), one starting with ``corrupt`` raises a
``FormatError`` naming a block.

Limits: whole file contents live in RAM (bounded by ``capacity``); no hard links or symlinks.
"""

from __future__ import annotations

import base64
import json
import posixpath
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from fsproto.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    FileTooBig,
    FormatError,
    FsReadOnly,
    InvalidName,
    InvalidOperation,
    IsADirectory,
    NameTooLong,
    NoSpace,
    NoSuchAttribute,
    NotADirectory,
    NotFound,
    UnknownFormat,
)
from fsproto.formats.base import Format
from fsproto.rawdev import BlockDevice
from fsproto.vfs import FileStat, Filesystem, FsStats, split_path


@dataclass
class _Node:
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)
    children: dict[str, "_Node"] = field(default_factory=dict)
    mtime_ns: int = field(default_factory=time.time_ns)
    xattrs: dict[str, bytes] = field(default_factory=dict)


class MemFS(Filesystem):
    """Nested in-memory filesystem with POSIX rename semantics and bounded capacity."""

    def __init__(
        self,
        *,
        read_only: bool = False,
        capacity: int = 512 << 20,
        max_files: int = 100_000,
        name_max: int = 255,
        block_size: int = 4096,
    ) -> None:
        self.read_only = read_only
        self.capacity = capacity
        self.max_files = max_files
        self.name_max = name_max
        self.block_size = block_size
        self.root = _Node(True)
        self._used = 0  # bytes of file data
        self._files = 1
        self.dirty = False
        self.closed = False

    # -- internals ------------------------------------------------------------------------------
    def _node(self, path: str) -> _Node:
        if not path.startswith("/"):
            raise InvalidName(f"path {path!r} is not absolute")
        node = self.root
        for part in filter(None, path.split("/")):
            if not node.is_dir:
                raise NotADirectory(f"{path}: a component is not a directory")
            try:
                node = node.children[part]
            except KeyError:
                raise NotFound(f"{path}: no such file or directory") from None
        return node

    def _parent(self, path: str) -> tuple[_Node, str]:
        parent, name = split_path(path)
        if not name:
            raise InvalidOperation("the root cannot be changed")
        if len(name.encode("utf-8", "surrogateescape")) > self.name_max:
            raise NameTooLong(f"{name!r}: longer than {self.name_max} bytes")
        node = self._node(parent)
        if not node.is_dir:
            raise NotADirectory(f"{parent} is not a directory")
        return node, name

    def _file(self, path: str) -> _Node:
        node = self._node(path)
        if node.is_dir:
            raise IsADirectory(f"{path} is a directory")
        return node

    def _writable(self) -> None:
        if self.read_only:
            raise FsReadOnly("filesystem is read-only")

    def _resize(self, node: _Node, size: int) -> None:
        grow = size - len(node.data)
        if size > self.capacity:
            raise FileTooBig(f"size {size} exceeds the {self.capacity}-byte capacity")
        if grow > 0 and self._used + grow > self.capacity:
            raise NoSpace("filesystem full")
        if grow > 0:
            node.data.extend(bytes(grow))
        else:
            del node.data[size:]
        self._used += grow

    def _stat(self, name: str, node: _Node) -> FileStat:
        size = len(node.data)
        bs = self.block_size
        return FileStat(
            name=name,
            is_dir=node.is_dir,
            size=size,
            mtime_ns=node.mtime_ns,
            alloc_bytes=(size + bs - 1) // bs * bs,
            mode=0o755 if node.is_dir else 0o644,
            nlink=2 if node.is_dir else 1,
        )

    def _touch(self, node: _Node) -> None:
        node.mtime_ns = time.time_ns()
        self.dirty = True

    # -- lookups ------------------------------------------------------------------------------
    def stat(self, path: str) -> FileStat:
        node = self._node(path)
        return self._stat(posixpath.basename(posixpath.normpath(path)) or "/", node)

    def listdir(self, path: str = "/") -> list[FileStat]:
        node = self._node(path)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        return [self._stat(n, c) for n, c in node.children.items()]

    # -- data -----------------------------------------------------------------------------------
    def read(self, path: str, offset: int, size: int) -> bytes:
        name = posixpath.basename(path)
        if name.startswith("boom"):
            raise RuntimeError(f"injected bug reading {path}")
        if name.startswith("corrupt"):
            raise FormatError("injected corruption", device="memfs", block=1234, offset=56, struct="FST")
        node = self._file(path)
        if offset < 0 or size < 0:
            raise InvalidOperation("negative offset or size")
        return bytes(node.data[offset : offset + size])

    def write(self, path: str, offset: int, data: bytes) -> int:
        self._writable()
        node = self._file(path)
        end = offset + len(data)
        if end > len(node.data):
            self._resize(node, end)
        node.data[offset:end] = data
        self._touch(node)
        return len(data)

    def truncate(self, path: str, size: int) -> None:
        self._writable()
        node = self._file(path)
        if size < 0:
            raise InvalidOperation("negative size")
        self._resize(node, size)
        self._touch(node)

    # -- namespace ------------------------------------------------------------------------------
    def _add(self, path: str, node: _Node) -> FileStat:
        self._writable()
        parent, name = self._parent(path)
        if name in parent.children:
            raise AlreadyExists(f"{path} exists")
        if self._files >= self.max_files:
            raise NoSpace("no free file slots")
        parent.children[name] = node
        self._files += 1
        self._touch(parent)
        return self._stat(name, node)

    def create(self, path: str) -> FileStat:
        return self._add(path, _Node(False))

    def mkdir(self, path: str) -> FileStat:
        return self._add(path, _Node(True))

    def _remove(self, path: str, want_dir: bool) -> None:
        self._writable()
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise NotFound(f"{path}: no such file or directory")
        if want_dir and not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        if not want_dir and node.is_dir:
            raise IsADirectory(f"{path} is a directory")
        if node.is_dir and node.children:
            raise DirectoryNotEmpty(f"{path} is not empty")
        del parent.children[name]
        self._used -= len(node.data)
        self._files -= 1
        self._touch(parent)

    def unlink(self, path: str) -> None:
        self._remove(path, want_dir=False)

    def rmdir(self, path: str) -> None:
        self._remove(path, want_dir=True)

    def rename(self, old: str, new: str) -> None:
        self._writable()
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        node = old_parent.children.get(old_name)
        if node is None:
            raise NotFound(f"{old}: no such file or directory")
        target = new_parent.children.get(new_name)
        if target is node:
            return
        if node.is_dir and (posixpath.normpath(new) + "/").startswith(posixpath.normpath(old) + "/"):
            raise InvalidOperation(f"cannot move {old} into itself")
        if target is not None:
            if target.is_dir and not node.is_dir:
                raise IsADirectory(f"{new} is a directory")
            if node.is_dir and not target.is_dir:
                raise NotADirectory(f"{new} is not a directory")
            if target.is_dir and target.children:
                raise DirectoryNotEmpty(f"{new} is not empty")
            self._used -= len(target.data)
            self._files -= 1
        del old_parent.children[old_name]
        new_parent.children[new_name] = node
        self._touch(old_parent)
        self._touch(new_parent)

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        self._writable()
        self._node(path).mtime_ns = mtime_ns
        self.dirty = True

    # -- extended attributes ----------------------------------------------------------------------
    def listxattr(self, path: str) -> list[str]:
        return list(self._node(path).xattrs)

    def getxattr(self, path: str, name: str) -> bytes:
        try:
            return self._node(path).xattrs[name]
        except KeyError:
            raise NoSuchAttribute(f"{path}: no attribute {name}") from None

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        self._writable()
        if not name.startswith("user."):
            raise InvalidOperation(f"only user.* attributes can be set, not {name}")
        self._node(path).xattrs[name] = bytes(value)
        self.dirty = True

    def removexattr(self, path: str, name: str) -> None:
        self._writable()
        try:
            del self._node(path).xattrs[name]
        except KeyError:
            raise NoSuchAttribute(f"{path}: no attribute {name}") from None
        self.dirty = True

    # -- whole filesystem --------------------------------------------------------------------------
    def statfs(self) -> FsStats:
        bs = self.block_size
        return FsStats(
            block_size=bs,
            total_blocks=self.capacity // bs,
            free_blocks=(self.capacity - self._used) // bs,
            total_files=self.max_files,
            free_files=self.max_files - self._files,
            name_max=self.name_max,
            label="MEMFS",
        )

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True

    # -- snapshots (for MEMIMG) -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def enc(node: _Node) -> dict[str, Any]:
            out: dict[str, Any] = {"m": node.mtime_ns, "x": {k: base64.b64encode(v).decode() for k, v in node.xattrs.items()}}
            if node.is_dir:
                out["c"] = {n: enc(c) for n, c in node.children.items()}
            else:
                out["d"] = base64.b64encode(bytes(node.data)).decode()
            return out

        return enc(self.root)

    def load_json(self, tree: dict[str, Any]) -> None:
        def dec(obj: dict[str, Any]) -> _Node:
            xattrs = {k: base64.b64decode(v) for k, v in obj["x"].items()}
            if "c" in obj:
                return _Node(True, children={n: dec(c) for n, c in obj["c"].items()}, mtime_ns=obj["m"], xattrs=xattrs)
            data = bytearray(base64.b64decode(obj["d"]))
            self._used += len(data)
            return _Node(False, data=data, mtime_ns=obj["m"], xattrs=xattrs)

        self._used = 0
        self.root = dec(tree)

        def count(node: _Node) -> int:
            return 1 + sum(count(c) for c in node.children.values())

        self._files = count(self.root)


# -- MEMIMG: a MemFS stored in a block device ------------------------------------------------------
MAGIC = b"MEMIMG01"
_HEADER = struct.Struct(">8sQI")  # magic, payload length, crc32 of the payload


class ImageMemFS(MemFS):
    """A MemFS that writes its snapshot back to its device on flush."""

    def __init__(self, dev: BlockDevice, **kwargs: Any) -> None:
        super().__init__(read_only=dev.read_only, capacity=dev.size // 2, **kwargs)
        self.dev = dev

    def flush(self) -> None:
        if self.read_only or not self.dirty:
            return
        payload = json.dumps(self.to_json()).encode()
        blob = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        bs = self.dev.block_size
        blob += bytes(-len(blob) % bs)
        if len(blob) > self.dev.size:
            raise NoSpace("snapshot does not fit the device", device=self.dev.name)
        self.dev.write(0, blob)
        self.dev.flush()
        self.dirty = False


class MemImgFormat(Format):
    name = "memimg"
    description = "test-only: a MemFS snapshot in a block device"

    def probe(self, dev: BlockDevice) -> bool:
        try:
            return dev.read(0, 1)[:8] == MAGIC
        except Exception:
            return False

    def open(self, dev: BlockDevice, **options: Any) -> Filesystem:
        head = dev.read(0, 1)
        if head[:8] != MAGIC:
            raise UnknownFormat("not a memimg device", device=dev.name)
        magic, length, crc = _HEADER.unpack_from(head)
        bs = dev.block_size
        if _HEADER.size + length > dev.size:
            raise FormatError(f"payload length {length} runs past the end", device=dev.name, block=0, offset=8, struct="header")
        raw = dev.read(0, (_HEADER.size + length + bs - 1) // bs)[_HEADER.size : _HEADER.size + length]
        if zlib.crc32(raw) != crc:
            raise FormatError("payload checksum mismatch", device=dev.name, block=0, offset=16, struct="header")
        fs = ImageMemFS(dev)
        fs.load_json(json.loads(raw))
        return fs

    def mkfs(self, dev: BlockDevice, *, progress: Any = None, **options: Any) -> None:
        fs = ImageMemFS(dev)
        fs.dirty = True
        fs.flush()


MEMIMG = MemImgFormat()
