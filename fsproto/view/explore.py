"""``fsproto explore``: a read-only Textual app over a format's outline and block map.

Left, the format's tree (:mod:`fsproto.formats.outline`), whose children load only when a node is
opened. Right, the selected structure's units in hex with the construct fields of its struct
laid over them (:func:`fsproto.formats.fields.field_spans`), named in a table with their decoded
values. Keys (keyboard only): arrows walk the tree, space/enter open a node, ``]``/``[`` step
through the fields, ``f`` follows the current field when it is a pointer, ``g`` goes to a unit by
number, ``/`` finds a name, ``q`` quits.

Read-only: the app holds the device opened read-only and has no code path that writes; the
header says so. A part that cannot be read (a failed read, bytes that do not parse as the
struct, a node the outline marks) is shown in red with the reason, never raised.

Limits: the hex view shows at most :data:`MAX_SHOWN` bytes of a node; search looks through the
outline to :data:`SEARCH_DEPTH` levels (names live there in CMS and at the top of FAT).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static, Tree
from textual.widgets.tree import TreeNode

from fsproto.errors import FsprotoError
from fsproto.formats.blockmap import BlockMap
from fsproto.formats.fields import FieldSpan, field_spans
from fsproto.formats.outline import Node, unit_node
from fsproto.view.hexview import hex_text, show_value

MAX_SHOWN = 64 * 1024
SEARCH_DEPTH = 4


class ExplorerApp(App[None]):
    """Browse *outline* over *bmap*; never writes."""

    TITLE = "fsproto explore"
    CSS = """
    #outline { width: 42%; }
    #right { width: 58%; }
    #where { height: auto; max-height: 4; background: $panel; }
    #hexscroll { height: 1fr; }
    #fields { height: 14; }
    #prompt { dock: bottom; display: none; }
    #prompt.visible { display: block; }
    """
    BINDINGS = [
        Binding("right_square_bracket", "field(1)", "next field"),
        Binding("left_square_bracket", "field(-1)", "prev field"),
        Binding("f", "follow", "follow pointer"),
        Binding("g", "prompt('goto')", "go to block"),
        Binding("slash", "prompt('search')", "search"),
        Binding("escape", "close_prompt", "close", show=False),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, bmap: BlockMap, outline: Node) -> None:
        super().__init__()
        self.bmap = bmap
        self.outline = outline
        self.current: Node | None = None  # the structure shown on the right
        self.data = b""
        self.spans: list[FieldSpan] = []
        self.field_index: int | None = None
        self.problem = ""  # why the shown part is (partly) unreadable
        self._prompt_kind = ""
        self._tree_nodes: dict[int, TreeNode[Node]] = {}
        self.sub_title = f"{bmap.device} — READ-ONLY: nothing is ever written"

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            tree: Tree[Node] = Tree(self._label(self.outline), data=self.outline, id="outline")
            yield tree
            with Vertical(id="right"):
                yield Static("", id="where")
                with VerticalScroll(id="hexscroll"):
                    yield Static("", id="hex")
                yield DataTable(id="fields", cursor_type="row", zebra_stripes=True)
        yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#fields", DataTable)
        table.add_columns("field", "offset", "size", "value")
        tree = self.query_one("#outline", Tree)
        self._tree_nodes[id(self.outline)] = tree.root
        self._populate(tree.root)
        tree.root.expand()
        tree.focus()
        self.show(self.outline)

    @staticmethod
    def _label(node: Node) -> Text:
        if node.error:
            return Text(f"✗ {node.label}", style="bold red")
        return Text(node.label)

    # -- the tree ---------------------------------------------------------------------------------
    def _populate(self, tnode: TreeNode[Node]) -> None:
        model = tnode.data
        if model is None or model.children is None or tnode.children:
            return
        try:
            kids = model.children()
        except FsprotoError as e:  # an outline should guard itself; never let a bad part end the app
            kids = [Node(f"{model.label}: unreadable", error=str(e), role="unreadable")]
        for k in kids:
            child = tnode.add(self._label(k), data=k, allow_expand=k.expandable)
            self._tree_nodes[id(k)] = child

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Node]) -> None:
        self._populate(event.node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Node]) -> None:
        if event.node.data is not None:
            self.show(event.node.data)

    # -- the right side ---------------------------------------------------------------------------
    def show(self, node: Node) -> None:
        """Read *node*'s units and lay its struct over them; failures are shown, not raised."""
        self.current, self.data, self.spans, self.field_index, self.problem = node, b"", [], None, node.error
        if node.start is not None and self.bmap.read_unit is not None:
            count = max(1, min(node.count, MAX_SHOWN // self.bmap.unit_size))
            try:
                self.data = self.bmap.read_unit(node.start, count)
            except FsprotoError as e:
                self.problem = f"{self.bmap.unit} {node.start} is unreadable: {e}"
        if self.data and node.struct is not None:
            try:
                self.spans = field_spans(node.struct, self.data, node.offset)
            except FsprotoError as e:
                self.problem = f"the bytes do not parse as this structure: {e}"
        self.field_index = 0 if self.spans else None
        self._refresh_fields()
        self._refresh_view()

    def _where(self) -> Text:
        node = self.current
        t = Text()
        if node is None:
            return t
        t.append(node.label, style="bold")
        if node.start is not None:
            try:
                t.append(f"   [{self.bmap.unit} {node.start}: {self.bmap.extent_at(node.start).describe()}]",
                         style="dim")
            except IndexError:
                t.append(f"   [{self.bmap.unit} {node.start}: outside the volume]", style="red")
        f = self.current_field
        if f is not None:
            t.append(f"\nfield {f.path} = {show_value(f.value, self.bmap.text_codec)}  (offset {f.offset}, "
                     f"{f.size} B)")
            if self._follow_target(f) is not None:
                t.append("  f: follow", style="dim")
        if self.problem:
            t.append(f"\n✗ {self.problem}", style="bold red")
        return t

    def _refresh_view(self) -> None:
        self.query_one("#where", Static).update(self._where())
        base = 0
        hexed = hex_text(self.data, self.spans, self.field_index, codec=self.bmap.text_codec, base=base) \
            if self.data else Text("(nothing to show)" if not self.problem else "(unreadable)", style="dim")
        self.query_one("#hex", Static).update(hexed)

    def _refresh_fields(self) -> None:
        table = self.query_one("#fields", DataTable)
        table.clear()
        for f in self.spans:
            table.add_row(f.path, str(f.offset), str(f.size), show_value(f.value, self.bmap.text_codec))

    # -- what tests and keys use ------------------------------------------------------------------
    @property
    def current_field(self) -> FieldSpan | None:
        return self.spans[self.field_index] if self.field_index is not None else None

    @property
    def highlighted_fields(self) -> dict[str, Any]:
        """The shown structure's fields by name (what the hex view colours)."""
        return {f.path: f.value for f in self.spans}

    def _follow_target(self, f: FieldSpan) -> int | None:
        if self.bmap.pointer_target is None or not isinstance(f.value, int):
            return None
        return self.bmap.pointer_target(f.path, f.value)

    def action_field(self, step: int) -> None:
        if not self.spans:
            return
        self.field_index = ((self.field_index or 0) + step) % len(self.spans)
        table = self.query_one("#fields", DataTable)
        table.move_cursor(row=self.field_index)
        self._refresh_view()
        self._scroll_to_field()

    def _scroll_to_field(self) -> None:
        f = self.current_field
        if f is not None:
            self.query_one("#hexscroll", VerticalScroll).scroll_to(y=max(0, f.offset // 16 - 3), animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.spans and event.cursor_row != self.field_index and 0 <= event.cursor_row < len(self.spans):
            self.field_index = event.cursor_row
            self._refresh_view()

    def action_follow(self) -> None:
        f = self.current_field
        target = self._follow_target(f) if f is not None else None
        if target is None:
            self.notify("the current field is not a pointer", severity="warning")
            return
        self.goto(target)

    def goto(self, unit: int) -> None:
        """Show *unit*: the tree node for it when one is already loaded, else its block-map view."""
        tree = self.query_one("#outline", Tree)
        for tnode in self._tree_nodes.values():
            model = tnode.data
            if model is not None and model.start == unit and model.offset == 0 and model.struct is not None:
                self._reveal(tnode)
                return
        try:
            self.show(unit_node(self.bmap, unit))
        except IndexError as e:
            self.notify(str(e), severity="error")
        tree.focus()

    def _reveal(self, tnode: TreeNode[Node]) -> None:
        tree = self.query_one("#outline", Tree)
        parent = tnode.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        # A node's line is known only once the tree has laid out the ancestors just opened.
        self.call_after_refresh(tree.move_cursor, tnode)
        if tnode.data is not None:
            self.show(tnode.data)

    def search(self, text: str) -> bool:
        """Move to the first node whose label holds *text* (any case), opening its ancestors."""
        want = text.strip().lower()
        if not want:
            return False
        tree = self.query_one("#outline", Tree)
        queue: list[tuple[TreeNode[Node], int]] = [(tree.root, 0)]
        while queue:
            tnode, depth = queue.pop(0)
            model = tnode.data
            if model is not None and depth and want in model.label.lower():
                self._reveal(tnode)
                return True
            if depth < SEARCH_DEPTH and model is not None and model.children is not None:
                self._populate(tnode)
                queue.extend((c, depth + 1) for c in tnode.children)
        self.notify(f"no name holds {text!r}", severity="warning")
        return False

    # -- the prompt -------------------------------------------------------------------------------
    def action_prompt(self, kind: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_kind = kind
        prompt.placeholder = f"{self.bmap.unit} number" if kind == "goto" else "name to find"
        prompt.value = ""
        prompt.add_class("visible")
        prompt.focus()

    def action_close_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.remove_class("visible")
        self.query_one("#outline", Tree).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.action_close_prompt()
        if self._prompt_kind == "goto":
            try:
                self.goto(int(value, 0))
            except ValueError:
                self.notify(f"{value!r} is not a number", severity="error")
        else:
            self.search(value)
