"""Byte ranges of a construct struct's fields, found by construct itself while it parses.

:func:`field_spans` takes a format's declaration (``formats/<fmt>/layout.py`` stays the one
source of the layout), inserts a ``Tell`` before each member of every ``Struct`` it contains
(nested structs and arrays of structs too) and parses; each leaf field then has its start and
end in the stream. Arrays of fixed-size leaves (an F pointer block's 1024 block numbers) are
cut by their element size. Context references (``this.length``) keep working: the inserted
members only add keys to the same context.

Limits: leaves are what is not a ``Struct`` or an ``Array`` of one (``Bytes``, integers,
``Const``, strings); a variable-size array of leaves is one span; parsing stops at the first
``ConstructError`` (a damaged block), which :func:`field_spans` raises as FormatError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from construct import Array, Construct, ConstructError, Container, ListContainer, Renamed, Struct, Tell

from fsproto.errors import FormatError

_START = "_fsproto_start_{}"
_END = "_fsproto_end"


@dataclass(frozen=True)
class FieldSpan:
    """One leaf field: its dotted path (``entries[3].next``), where it lies, and its value."""

    path: str
    offset: int
    size: int
    value: Any

    @property
    def end(self) -> int:
        return self.offset + self.size


def _instrument(con: Construct) -> Construct:
    if isinstance(con, Renamed):
        return Renamed(_instrument(con.subcon), newname=con.name, newdocs=con.docs)
    if isinstance(con, Struct):
        members: list[Construct] = []
        for i, sc in enumerate(con.subcons):
            members.append(_START.format(i) / Tell)
            members.append(_instrument(sc))
        members.append(_END / Tell)
        return Struct(*members)
    if isinstance(con, Array) and _is_struct(con.subcon):
        return Array(con.count, _instrument(con.subcon))
    return con


def _is_struct(con: Construct) -> bool:
    while isinstance(con, Renamed):
        con = con.subcon
    return isinstance(con, Struct)


def _leaf_size(con: Construct) -> int | None:
    try:
        return con.sizeof()
    except ConstructError:
        return None


def _walk(con: Construct, parsed: Any, path: str, start: int, end: int, out: list[FieldSpan]) -> None:
    while isinstance(con, Renamed):
        con = con.subcon
    if isinstance(con, Struct) and isinstance(parsed, Container):
        members = con.subcons[1:-1:2]  # the instrumented struct: Tell, member, Tell, ..., end Tell
        for i, sc in enumerate(members):
            s = parsed[_START.format(i)]
            e = parsed[_START.format(i + 1)] if i + 1 < len(members) else parsed[_END]
            name = sc.name
            if name is None:
                continue
            _walk(sc, parsed.get(name), f"{path}.{name}" if path else name, s, e, out)
        return
    if isinstance(con, Array) and isinstance(parsed, ListContainer):
        if _is_struct(con.subcon):
            inner = con.subcon
            while isinstance(inner, Renamed):
                inner = inner.subcon
            for k, item in enumerate(parsed):
                s = item[_START.format(0)] if len(inner.subcons) > 1 else item[_END]
                _walk(inner, item, f"{path}[{k}]", s, item[_END], out)
            return
        size = _leaf_size(con.subcon)
        if size:
            for k, item in enumerate(parsed):
                out.append(FieldSpan(f"{path}[{k}]", start + k * size, size, item))
            return
    out.append(FieldSpan(path, start, end - start, parsed))


def field_spans(struct: Construct, data: bytes, offset: int = 0) -> list[FieldSpan]:
    """The leaf fields of *struct* parsed from ``data[offset:]``, offsets relative to *data*.

    Raises FormatError when the bytes do not parse (a Const that does not match, too few bytes).
    """
    inst = _instrument(struct)
    try:
        parsed = inst.parse(bytes(data[offset:]))
    except ConstructError as e:
        raise FormatError(f"does not parse as {struct.name or 'the struct'}: {e}", offset=offset) from None
    out: list[FieldSpan] = []
    if isinstance(parsed, Container) and _END in parsed:
        _walk(inst, parsed, "", 0, parsed[_END], out)
    else:
        _walk(inst, parsed, "value", 0, _leaf_size(struct) or len(data) - offset, out)
    return [FieldSpan(f.path, f.offset + offset, f.size, f.value) for f in out]
