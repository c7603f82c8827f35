"""Just enough ELF reading for the harness: a binary's ``DT_NEEDED`` libraries and a kernel
module's ``.modinfo`` (its ``depends=`` list).

The guest's files are s390x (big-endian, ELF64), the host is not: nothing here may run the
binaries or rely on host tools (readelf, depmod), so the two tables are read directly.
References: the System V gABI, "Sections" and "Dynamic Section".
"""

from __future__ import annotations

import struct
from pathlib import Path

from fsproto.errors import HarnessSetupError

_SHT_DYNAMIC = 6
_DT_NULL = 0
_DT_NEEDED = 1


class ElfFile:
    """Section table of one ELF file, read into memory (the files here are a few MiB at most).

    Raises HarnessSetupError when the file is not ELF or its tables point outside the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        d = self.data
        if d[:4] != b"\x7fELF" or len(d) < 64:
            raise HarnessSetupError(f"{path}: not an ELF file")
        self.is64 = d[4] == 2
        self.order = ">" if d[5] == 2 else "<"
        if self.is64:
            shoff, = struct.unpack_from(self.order + "Q", d, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(self.order + "HHH", d, 0x3A)
        else:
            shoff, = struct.unpack_from(self.order + "I", d, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(self.order + "HHH", d, 0x2E)
        self.sections: list[tuple[int, int, int, int, int]] = []  # name, type, offset, size, link
        for i in range(shnum):
            off = shoff + i * shentsize
            self._check(off, shentsize)
            if self.is64:
                name, typ, _flags, _addr, offset, size, link = struct.unpack_from(self.order + "IIQQQQI", d, off)
            else:
                name, typ, _flags, _addr, offset, size, link = struct.unpack_from(self.order + "IIIIIII", d, off)
            self.sections.append((name, typ, offset, size, link))
        self._shstr = self._section_bytes(shstrndx) if shnum else b""

    def _check(self, off: int, size: int) -> None:
        if off < 0 or off + size > len(self.data):
            raise HarnessSetupError(f"{self.path}: ELF table at offset {off} runs past the end of the file")

    def _section_bytes(self, index: int) -> bytes:
        if index >= len(self.sections):
            raise HarnessSetupError(f"{self.path}: ELF section {index} does not exist")
        _n, typ, offset, size, _l = self.sections[index]
        if typ == 8:  # SHT_NOBITS occupies no file bytes
            return b""
        self._check(offset, size)
        return self.data[offset : offset + size]

    def section_name(self, index: int) -> str:
        start = self.sections[index][0]
        end = self._shstr.find(b"\0", start)
        return self._shstr[start:end].decode("ascii", "replace")

    def section(self, name: str) -> bytes | None:
        for i in range(len(self.sections)):
            if self.section_name(i) == name:
                return self._section_bytes(i)
        return None

    def needed(self) -> list[str]:
        """The ``DT_NEEDED`` sonames, in order (empty for a static binary)."""
        out: list[str] = []
        for i, (_n, typ, _o, _s, link) in enumerate(self.sections):
            if typ != _SHT_DYNAMIC:
                continue
            dyn = self._section_bytes(i)
            strtab = self._section_bytes(link)
            fmt = self.order + ("qQ" if self.is64 else "iI")
            step = struct.calcsize(fmt)
            for off in range(0, len(dyn) - step + 1, step):
                tag, val = struct.unpack_from(fmt, dyn, off)
                if tag == _DT_NULL:
                    break
                if tag == _DT_NEEDED:
                    end = strtab.find(b"\0", val)
                    out.append(strtab[val:end].decode("ascii", "replace"))
        return out

    def modinfo(self) -> dict[str, str]:
        """The ``key=value`` strings of a kernel module's ``.modinfo`` (first value per key)."""
        raw = self.section(".modinfo") or b""
        info: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key.decode("ascii", "replace") not in info:
                info[key.decode("ascii", "replace")] = value.decode("ascii", "replace")
        return info
