"""The board's table of sessions, its rows updated in place and each changed row alone drawn
again; and a pane updated only when its content changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey, RowKey


class SessionTable(DataTable[Text | str]):
    """Sessions grouped by attention zone; rows updated in place."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True  # the board adds the columns that fit (BoardApp.rebuild)

    def set_cells(self, row: str, cells: dict[str, Text | str]) -> None:
        """One row's changed cells, and only that row drawn again. DataTable's update_cell
        bumps a table-wide count every render cache is keyed on, so one changed cell drew
        every visible row again (10 changed rows of 200 cost 0.58x a rebuild, to the frame);
        here the row's own cache entries are dropped and its region refreshed."""
        try:
            key = RowKey(row)
            for col, value in cells.items():
                self._data[key][ColumnKey(col)] = value
            index = self._row_locations.get(key)
            if index is None:
                raise KeyError(row)
            region = self._get_row_region(index)
            ys = range(region.y, region.y + region.height)
            caches: tuple[tuple[Any, Callable[[Any], bool]], ...] = (
                (self._cell_render_cache, lambda k: k[0] == key),
                (self._row_render_cache, lambda k: k[0] == key),
                (self._line_cache, lambda k: k[0] in ys),
                (self._row_renderable_cache, lambda k: k[1] == index))
            for cache, mine in caches:
                for k in [k for k in cache.keys() if mine(k)]:  # noqa: SIM118 (an LRUCache)
                    cache.discard(k)
            self.refresh_row(index)
        except (AttributeError, KeyError, TypeError, IndexError):  # other Textual internals
            for col, value in cells.items():
                self.update_cell(row, col, value)


def _show(target: Static, content: Text | str) -> None:
    """The widget's content, updated only when it changed: an update lays the whole screen
    out again, and the plan view's, made at every poll, redrew every visible row."""
    if getattr(target, "_ao_shown", None) != content:  # Text compares its text and styles
        target._ao_shown = content  # type: ignore[attr-defined]
        target.update(content)
