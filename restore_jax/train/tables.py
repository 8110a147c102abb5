"""Fixed-width text tables for evaluation results (the engine's and the methods' protocols share this)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its ``header``, its ``width`` in characters, the format spec of a numeric cell
    (``fmt``, e.g. ``'.2f'``; ``''`` for ``str()``-like formatting) and the alignment (``'>'`` right,
    ``'<'`` left) of the header and the cells."""

    header: str
    width: int
    fmt: str = ""
    align: str = ">"


def _cell(value: Any, col: Column) -> str:
    if isinstance(value, str):  # names and placeholders ('-') ignore the numeric format
        return f"{value:{col.align}{col.width}}"
    return f"{value:{col.align}{col.width}{col.fmt}}"


def format_table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> str:
    """``title``, the header line, a rule of ``-`` as long as the header and one line per row.

    Cells are separated by one space and padded to their column's width (longer values are not
    cut: truncate names before passing them). A string cell is printed as it is, whatever the
    column's ``fmt``, so ``'-'`` can stand for a missing number.
    """
    head = " ".join(_cell(c.header, c) for c in columns)
    lines = [title, head, "-" * len(head)]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a table row has {len(row)} cells for {len(columns)} columns: {row!r}")
        lines.append(" ".join(_cell(v, c) for v, c in zip(row, columns)))
    return "\n".join(lines)
