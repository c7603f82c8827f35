"""Hex dump of a block with a struct's fields laid over it (rich Text), for ``fsproto explore``.

Each field's bytes get one of two alternating backgrounds so neighbours stay apart; the current
field is drawn reversed. The text column decodes bytes with the format's codec (cp1047 for CMS,
so EBCDIC text reads), showing ``.`` for what does not print.
"""

from __future__ import annotations

from rich.text import Text

from fsproto.formats.fields import FieldSpan

BYTES_PER_LINE = 16
FIELD_STYLES = ("on #203a5c", "on #2e4d2e")
CURRENT_STYLE = "bold black on yellow"


def _char(b: int, codec: str) -> str:
    ch = bytes([b]).decode(codec, "replace")
    return ch if ch.isprintable() and ch != "\ufffd" and len(ch) == 1 else "."


def hex_text(data: bytes, spans: list[FieldSpan], current: int | None, *, codec: str = "latin-1",
             base: int = 0) -> Text:
    """*data* as hex lines (offsets from *base*), fields of *spans* coloured, *current* reversed."""
    owner = [-1] * len(data)
    for i, s in enumerate(spans):
        for k in range(max(0, s.offset), min(len(data), s.end)):
            owner[k] = i
    chars = [_char(b, codec) for b in range(256)]
    out = Text()
    for line in range(0, len(data), BYTES_PER_LINE):
        out.append(f"{base + line:06x}  ", style="dim")
        chunk = data[line : line + BYTES_PER_LINE]
        for k, b in enumerate(chunk):
            i = owner[line + k]
            style = "" if i < 0 else CURRENT_STYLE if i == current else FIELD_STYLES[i % 2]
            out.append(f"{b:02x}", style=style)
            nxt = owner[line + k + 1] if line + k + 1 < len(data) else -2
            out.append(" ", style=style if nxt == i and i >= 0 and k + 1 < len(chunk) else "")
        out.append("   " * (BYTES_PER_LINE - len(chunk)))
        out.append(" ")
        for k, b in enumerate(chunk):
            i = owner[line + k]
            out.append(chars[b], style="" if i < 0 else CURRENT_STYLE if i == current else FIELD_STYLES[i % 2])
        out.append("\n")
    return out


def show_value(value: object, codec: str) -> str:
    """A field value as the fields table shows it: integers with hex, bytes as hex plus text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value} (0x{value:x})"
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        text = "".join(_char(b, codec) for b in raw)
        shown = raw[:16].hex(" ") + (" ..." if len(raw) > 16 else "")
        return f"{shown}  {text[:32]!r}" if any(c != "." for c in text) else shown
    return repr(value)
