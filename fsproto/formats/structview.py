"""A ``struct.Struct`` derived from a construct ``Struct`` declaration, for hot loops.

The construct declaration in each format's ``layout.py`` stays the single source of a layout;
this module reads its fields (fixed ``Bytes``, ``IntNNub``/``IntNNul`` and ``Const`` of those)
and builds the equivalent ``struct`` format, so a directory scan can ``iter_unpack`` a whole
block (C speed) without a second, hand-written description that could drift. Anything the
derivation does not understand (variable sizes, bit fields, mixed byte orders) raises
``TypeError`` at import time rather than parsing differently. ``tests/test_structview.py`` checks
the derived parsers against construct's own, interpreted and compiled.

Limits: no nesting, arrays or adapters; field values are what ``struct`` gives (``bytes`` and
``int``), without construct's ``Const`` check (use it on bytes that were validated, as
construct's compiled mode is).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from construct import Bytes, Const, FormatField, Renamed, Struct

_ORDER_OF = {"<": "<", ">": ">", "=": "=", "!": ">"}


@dataclass(frozen=True)
class StructView:
    """The derived ``struct.Struct`` and the construct field names, in order."""

    struct: struct.Struct
    names: tuple[str, ...]

    @property
    def format(self) -> str:
        return self.struct.format

    @property
    def size(self) -> int:
        return self.struct.size


def _unwrap(con: object) -> object:
    while isinstance(con, Renamed):
        con = con.subcon
    return con


def _field_code(con: object, name: str) -> tuple[str, str | None]:
    """(struct code, byte order or None when the field has none) of one field."""
    con = _unwrap(con)
    if isinstance(con, Const):
        con = _unwrap(con.subcon)
    if isinstance(con, Bytes) and isinstance(con.length, int):
        return f"{con.length}s", None
    if isinstance(con, FormatField):
        order, code = con.fmtstr[0], con.fmtstr[1:]
        return code, (_ORDER_OF[order] if struct.calcsize(code) > 1 else None)
    raise TypeError(f"field {name!r} ({type(con).__name__}) has no fixed struct equivalent")


def struct_view(decl: Struct | Renamed) -> StructView:
    """Derive the ``struct`` equivalent of a flat construct Struct. Raises TypeError."""
    s = _unwrap(decl)
    if not isinstance(s, Struct):
        raise TypeError(f"{type(s).__name__} is not a construct Struct")
    codes: list[str] = []
    names: list[str] = []
    order: str | None = None
    for sc in s.subcons:
        if not sc.name:
            raise TypeError("an unnamed field cannot be derived")
        code, o = _field_code(sc, sc.name)
        if o is not None:
            if order is not None and o != order:
                raise TypeError(f"field {sc.name!r} has byte order {o!r}, earlier fields {order!r}")
            order = o
        codes.append(code)
        names.append(sc.name)
    st = struct.Struct((order or ">") + "".join(codes))
    if st.size != s.sizeof():
        raise TypeError(f"derived size {st.size} differs from the declaration's {s.sizeof()}")
    return StructView(st, tuple(names))
