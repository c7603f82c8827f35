"""Register maps: registers declared once as data (offset, width, bitfields), bound to a Region.

Shaped like libvfn's ``NVME_FIELD_GET`` tables: a :class:`Register` is an offset plus named
bitfields (msb:lsb, access kind), and one :class:`Regs` object reads, decodes, encodes, pretty
prints and writes them. Access kinds:

* ``rw`` -- ordinary read/write bits; ``ro`` -- read-only (writes rejected);
* ``rw1c`` -- write 1 to clear (status bits: AHCI PxIS, PCI STATUS errors);
* ``w1s`` -- write 1 to set (AHCI PxCI: writing back a read value would re-issue commands);
* a register whose ``kind`` is ``doorbell`` or ``wo`` is write-only: never read, never
  read-modify-written (NVMe doorbells, NSSR).

:meth:`Regs.set` is the read-modify-write used for ordinary registers: it keeps the other ``rw``
fields, writes 0 to every ``rw1c``/``w1s`` bit (so a set never clears pending status or
re-issues a command) and refuses doorbells. :meth:`Regs.clear` writes 1s only to the named
``rw1c`` bits. Writes return the read-back value (rwmem's "rwr" mode), and ``verify=True``
raises when ``rw`` bits did not stick ("my write has no effect", periphery #15).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from fsproto.errors import HardwareError, UsageError
from fsproto.hw.region import Region

ACCESS = ("rw", "ro", "rw1c", "w1s", "wo")
KINDS = ("rw", "ro", "doorbell", "wo")


@dataclass(frozen=True)
class Field:
    """A bitfield ``msb:lsb`` of a register (bit numbers as in the spec tables)."""

    name: str
    msb: int
    lsb: int
    access: str = "rw"
    doc: str = ""
    values: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.access not in ACCESS or self.msb < self.lsb:
            raise ValueError(f"bad field {self.name}: {self.msb}:{self.lsb} {self.access}")

    @property
    def width(self) -> int:
        return self.msb - self.lsb + 1

    @property
    def mask(self) -> int:
        """The field's bits in register position."""
        return ((1 << self.width) - 1) << self.lsb

    def get(self, value: int) -> int:
        return (value >> self.lsb) & ((1 << self.width) - 1)

    def put(self, value: int, v: int) -> int:
        """*value* with this field replaced by *v*. Raises UsageError when *v* does not fit."""
        if not isinstance(v, int) or not 0 <= v < 1 << self.width:
            raise UsageError(f"{v!r} does not fit field {self.name} ({self.width} bits)")
        return (value & ~self.mask) | (v << self.lsb)


def F(name: str, bits: str | int, access: str = "rw", doc: str = "", values: Mapping[int, str] | None = None) -> Field:
    """Shorthand: ``F("MQES", "15:0", "ro")`` or ``F("EN", 0)``."""
    if isinstance(bits, int):
        msb = lsb = bits
    else:
        hi, _, lo = bits.partition(":")
        msb, lsb = int(hi), int(lo or hi)
    return Field(name, msb, lsb, access, doc, values or {})


@dataclass(frozen=True)
class Register:
    """One register: name, byte offset, width in bits, fields, kind."""

    name: str
    offset: int
    width: int
    fields: tuple[Field, ...] = ()
    kind: str = "rw"
    doc: str = ""

    def __post_init__(self) -> None:
        if self.width not in (8, 16, 32, 64) or self.offset % (self.width // 8) or self.kind not in KINDS:
            raise ValueError(f"bad register {self.name} at {self.offset:#x} width {self.width} kind {self.kind}")
        for f in self.fields:
            if f.msb >= self.width:
                raise ValueError(f"field {self.name}.{f.name} is outside the {self.width}-bit register")

    def field(self, name: str) -> Field:
        """Raises UsageError naming the known fields."""
        for f in self.fields:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.fields) or "none"
        raise UsageError(f"register {self.name} has no field {name!r} (fields: {known})")

    def _mask(self, *access: str) -> int:
        m = 0
        for f in self.fields:
            if f.access in access:
                m |= f.mask
        return m

    @property
    def rw_mask(self) -> int:
        """Bits a read-modify-write may carry over (plain rw fields; the whole register if none)."""
        return self._mask("rw") if self.fields else (1 << self.width) - 1

    @property
    def special_mask(self) -> int:
        """Bits that act when written as 1 (rw1c, w1s): a RMW must write them as 0."""
        return self._mask("rw1c", "w1s")

    def decode(self, value: int) -> dict[str, int]:
        return {f.name: f.get(value) for f in self.fields}

    def encode(self, base: int = 0, **fields: int) -> int:
        """*base* with the named fields replaced. Raises UsageError for unknown/too-wide fields."""
        value = base
        for name, v in fields.items():
            value = self.field(name).put(value, v)
        return value

    def format(self, value: int) -> str:
        """``CC = 0x00460001  EN=1 CSS=0 ...`` (enum names in parentheses)."""
        parts = []
        for f in self.fields:
            v = f.get(value)
            label = f.values.get(v)
            parts.append(f"{f.name}={v:#x}" + (f"({label})" if label else "") if f.width > 1 else f"{f.name}={v}")
        digits = self.width // 4
        return f"{self.name:<10} = {value:#0{digits + 2}x}  " + " ".join(parts)


class RegValue(int):
    """A register value that knows its register: ``regs.CAP.MQES``, pretty ``repr``."""

    register: Register

    def __new__(cls, value: int, register: Register) -> "RegValue":
        obj = super().__new__(cls, value)
        obj.register = register
        return obj

    def __getattr__(self, name: str) -> int:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.register.field(name).get(int(self))
        except UsageError as e:
            raise AttributeError(str(e)) from None

    def fields(self) -> dict[str, int]:
        return self.register.decode(int(self))

    def __repr__(self) -> str:
        return self.register.format(int(self))

    __str__ = __repr__


class RegMap:
    """A named set of registers (declared once per spec); :meth:`bind` puts it on a Region."""

    def __init__(self, name: str, registers: Iterable[Register], *, source: str = "") -> None:
        self.name = name
        self.source = source
        self.registers: dict[str, Register] = {}
        for r in sorted(registers, key=lambda r: r.offset):
            if r.name in self.registers:
                raise ValueError(f"{name}: duplicate register {r.name}")
            self.registers[r.name] = r

    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise UsageError(f"{self.name} has no register {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.registers

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.registers.values())

    def extended(self, name: str, extra: Iterable[Register]) -> "RegMap":
        """A new map with *extra* registers added (e.g. doorbells once the stride is known)."""
        return RegMap(name, [*self.registers.values(), *extra], source=self.source)

    @property
    def span(self) -> int:
        """Bytes from offset 0 to the end of the last register."""
        return max((r.offset + r.width // 8 for r in self.registers.values()), default=0)

    def bind(self, region: Region, base: int = 0) -> "Regs":
        """Raises RegionOutOfRange when the map does not fit the region at *base*."""
        return Regs(self, region, base)


class Regs:
    """A :class:`RegMap` bound to a :class:`Region` at *base*: the REPL's ``regs`` object."""

    def __init__(self, regmap: RegMap, region: Region, base: int = 0) -> None:
        if base < 0 or base + regmap.span > region.size:
            from fsproto.errors import RegionOutOfRange

            raise RegionOutOfRange(
                f"{regmap.name} needs {regmap.span:#x} bytes at {base:#x}; the region has {region.size:#x}",
                device=region.name,
                offset=base,
            )
        object.__setattr__(self, "map", regmap)
        object.__setattr__(self, "region", region)
        object.__setattr__(self, "base", base)

    map: RegMap
    region: Region
    base: int

    # -- reads -----------------------------------------------------------------------------------
    def _resolve(self, reg: str | Register) -> Register:
        return reg if isinstance(reg, Register) else self.map[reg]

    def read(self, reg: str | Register) -> RegValue:
        """One access of the register's width. Raises UsageError for write-only registers, Region errors."""
        r = self._resolve(reg)
        if r.kind in ("doorbell", "wo"):
            raise UsageError(f"{r.name} is write-only ({r.kind}); it cannot be read", device=self.region.name)
        return RegValue(self.region.peek(self.base + r.offset, r.width), r)

    def get(self, path: str) -> int:
        """``get("CC.EN")`` -> the field value; ``get("CC")`` -> the register. Raises UsageError."""
        name, _, fname = path.partition(".")
        value = self.read(name)
        return value.register.field(fname).get(int(value)) if fname else int(value)

    def __getattr__(self, name: str) -> RegValue:
        if name in self.map:
            return self.read(name)
        raise AttributeError(f"{self.map.name} has no register {name!r}")

    def __setattr__(self, name: str, value: int) -> None:
        if name in self.map:
            self.write(name, value)
            return
        raise AttributeError(f"{self.map.name} has no register {name!r}")

    def __dir__(self) -> list[str]:
        return [*self.map.registers, "read", "get", "write", "set", "clear", "ring", "decode", "dump", "wait"]

    def decode(self, reg: str | Register) -> dict[str, int]:
        return self.read(reg).fields()

    def dump(self, names: Iterable[str] | None = None) -> str:
        """Every readable register decoded, one per line (doorbells and write-only skipped)."""
        lines = []
        for r in self.map:
            if names is not None and r.name not in names:
                continue
            if r.kind in ("doorbell", "wo"):
                continue
            lines.append(repr(self.read(r)))
        return "\n".join(lines)

    def wait(self, path: str, value: int, *, timeout: float, interval: float = 0.0002) -> int:
        """Poll ``REG`` or ``REG.FIELD`` until it reads *value*; returns the number of reads.

        Bounded: raises ControllerError after *timeout* seconds naming the last value read
        (e.g. ``wait("CSTS.RDY", 1, timeout=cap.TO * 0.5)``, NVMe CAP.TO is in 500 ms units).
        Raises UsageError, Region errors.
        """
        import time

        from fsproto.errors import ControllerError

        deadline = time.monotonic() + timeout
        reads = 0
        while True:
            current = self.get(path)
            reads += 1
            if current == value:
                return reads
            if time.monotonic() >= deadline:
                raise ControllerError(
                    f"{path} is still {current:#x} after {timeout:g} s (waited for {value:#x})",
                    device=self.region.name,
                )
            time.sleep(interval)

    # -- writes ------------------------------------------------------------------------------------
    def write(self, reg: str | Register, value: int, *, verify: bool = False) -> RegValue | None:
        """Store *value* as one access of the register's width; return the read-back value.

        Doorbells and write-only registers are written and not read back (None). With
        *verify*, raises HardwareError when the ``rw`` bits read back differently.
        Raises AccessDenied (read-only register or region), UsageError, Region errors.
        """
        r = self._resolve(reg)
        if r.kind == "ro":
            from fsproto.errors import AccessDenied

            raise AccessDenied(f"{r.name} is a read-only register", device=self.region.name, offset=self.base + r.offset)
        self.region.poke(self.base + r.offset, value, r.width)
        if r.kind in ("doorbell", "wo") or self.region.dry_run:
            return None
        back = self.read(r)
        if verify and (int(back) ^ value) & r.rw_mask:
            raise HardwareError(
                f"write of {value:#x} to {r.name} did not stick: read back {int(back):#x} "
                f"(bits {((int(back) ^ value) & r.rw_mask):#x} differ); the bits may be locked or read-only",
                device=self.region.name,
                offset=self.base + r.offset,
            )
        return back

    def ring(self, reg: str | Register, value: int) -> None:
        """Write a doorbell: one store, no read before or after. Raises UsageError for non-doorbells."""
        r = self._resolve(reg)
        if r.kind != "doorbell":
            raise UsageError(f"{r.name} is not a doorbell")
        self.region.poke(self.base + r.offset, value, r.width)

    def set(self, reg: str | Register, *, verify: bool = False, **fields: int) -> RegValue | None:
        """Read-modify-write: change *fields*, keep other ``rw`` fields, write 0 to rw1c/w1s bits.

        Raises UsageError for doorbells/write-only registers (never RMW a doorbell), for ro,
        rw1c or w1s fields (use :meth:`clear` / :meth:`write`), and like :meth:`write`.
        """
        r = self._resolve(reg)
        if r.kind in ("doorbell", "wo"):
            raise UsageError(f"{r.name} is a {r.kind}: never read-modify-written; use ring()/write()")
        for name in fields:
            f = r.field(name)
            if f.access != "rw":
                hint = "use clear()" if f.access == "rw1c" else "use write()"
                raise UsageError(f"{r.name}.{name} is {f.access}: {hint}")
        current = int(self.read(r))
        value = r.encode(current & r.rw_mask, **fields)
        return self.write(r, value, verify=verify)

    def clear(self, reg: str | Register, *names: str) -> RegValue | None:
        """Write 1 to the named rw1c fields (all of them when none named); other rw fields kept.

        Raises UsageError for a field that is not rw1c, and like :meth:`write`.
        """
        r = self._resolve(reg)
        targets = [r.field(n) for n in names] if names else [f for f in r.fields if f.access == "rw1c"]
        bits = 0
        for f in targets:
            if f.access != "rw1c":
                raise UsageError(f"{r.name}.{f.name} is {f.access}, not rw1c")
            bits |= f.mask
        keep = int(self.read(r)) & r._mask("rw") if r._mask("rw") else 0
        return self.write(r, keep | bits)

    def __repr__(self) -> str:
        return f"Regs({self.map.name} on {self.region.name} at {self.base:#x})"
