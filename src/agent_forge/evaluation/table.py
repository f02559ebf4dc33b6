"""Every accuracy table the project prints: rich tables for the console, markdown for the README.

Accuracies are percentages (0-100) everywhere, as `EvalReport` gives them; `cell` formats one value ("-" for a
missing one), so every table shows numbers the same way.
- `accuracy_table(reports)`: several models side by side, one column per (domain, level) plus each domain's mean
  (the seed, evomerge and bitnet stages).
- `accuracy_grid(by_domain_level, by_domain, levels)`: one model, one row per domain and one column per level
  (`agent-forge eval`).
- `rows_table(title, columns, rows)` / `markdown_table(columns, rows)`: any other table of already formatted
  cells (a stage's comparison; ``agent-forge report RUN --markdown` (pipeline/report.py)`).
Every rich table here is a `FitTable`: its name column never wraps and is never cut to "…", and when the other
columns do not fit the console beside it (100 columns, or 80 when piped) the table is printed as several tables
one below the other, each repeating the name column, instead of squeezing every column to a few characters.
Exercise: `python -m pytest tests/evaluation/test_table.py`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any, Hashable, Iterable, Mapping, Sequence

from rich._ratio import ratio_reduce
from rich.table import Table

from .report import EvalReport


def cell(value: Any, digits: int = 1) -> str:
    """A number with `digits` decimals; None and NaN as "-"; anything else as its `str`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


class FitTable(Table):
    """A rich `Table` that stays whole at any console width.

    The first `key_columns` columns (the row names) never wrap and are never shortened. The other columns are
    narrowed down to their longest word (headers wrap between words, cells fold, nothing is cut to "…"); when
    even that is wider than the console, the table is rendered as several tables, each holding the key columns
    and as many of the others as fit. `add_column(..., group=g)` keeps the columns of one group (a domain's
    levels) together in one part where they fit.
    """

    def __init__(self, *args: Any, key_columns: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_columns = key_columns
        self.column_groups: list[Hashable] = []
        self._laid_out = False  # a part with its widths decided: rendered as it is

    def add_column(self, *args: Any, group: Hashable = None, **kwargs: Any) -> None:
        index = len(self.columns)
        if index < self.key_columns:
            kwargs.setdefault("no_wrap", True)
        else:
            kwargs.setdefault("overflow", "fold")  # a cell too long for its column wraps, it is never cut
        super().add_column(*args, **kwargs)
        self.column_groups.append(group if group is not None else ("column", index))

    def __rich_console__(self, console, options):
        if self._laid_out or not self.columns:
            yield from super().__rich_console__(console, options)
            return
        width = options.max_width if self.width is None else self.width
        measured = [self._measure_column(console, options.update_width(10**6), c) for c in self.columns]
        keys = list(range(min(self.key_columns, len(self.columns))))
        # key (and no_wrap) columns at their full width (a name is never wrapped or cut), the others down to
        # their longest word
        minimum = [m.maximum if i in keys or c.no_wrap else m.minimum
                   for i, (m, c) in enumerate(zip(measured, self.columns))]
        maximum = [max(m.maximum, minimum[i]) for i, m in enumerate(measured)]
        parts = self._parts(keys, minimum, width)
        for number, indexes in enumerate(parts, start=1):
            title = self.title if len(parts) == 1 or not self.title else f"{self.title} ({number}/{len(parts)})"
            yield self._part(indexes, title, keys, minimum, maximum, width)

    def _width(self, widths: Sequence[int]) -> int:
        """The table's width with these column widths (padding included) and its borders."""
        borders = ((2 if self.show_edge else 0) + len(widths) - 1) if self.box else 0
        return sum(widths) + borders

    def _parts(self, keys: list[int], minimum: list[int], width: int) -> list[list[int]]:
        """Column indexes of each part (key columns first); one part when the whole table fits."""
        rest = [i for i in range(len(self.columns)) if i not in keys]

        def fits(indexes: Iterable[int]) -> bool:
            return self._width([minimum[i] for i in (*keys, *indexes)]) <= width

        if not rest or fits(rest):
            return [[*keys, *rest]]
        groups: list[list[int]] = []
        for index in rest:
            if groups and self.column_groups[groups[-1][-1]] == self.column_groups[index]:
                groups[-1].append(index)
            else:
                groups.append([index])
        parts: list[list[int]] = []
        current: list[int] = []
        for group in groups:
            if fits([*current, *group]):
                current += group
            elif current and fits(group):
                parts.append(current)
                current = list(group)
            else:  # a group wider than the console on its own: split it too
                for index in group:
                    if current and not fits([*current, index]):
                        parts.append(current)
                        current = []
                    current.append(index)
        if current:
            parts.append(current)
        return [[*keys, *part] for part in parts]

    def _part(self, indexes: list[int], title: Any, keys: list[int], minimum: list[int], maximum: list[int],
              width: int) -> "FitTable":
        """A copy holding these columns, with widths that fit `width` and keep every column at its minimum."""
        widths = [maximum[i] for i in indexes]
        excess = self._width(widths) - width
        if excess > 0:  # narrow the non-key columns in proportion to how much each can give
            slack = [maximum[i] - minimum[i] for i in indexes]  # 0 for key and no_wrap columns
            widths = ratio_reduce(min(excess, sum(slack)), slack, slack, widths)
        part = copy.copy(self)
        part.columns = []
        for n, (i, column_width) in enumerate(zip(indexes, widths)):
            column = replace(self.columns[i], _index=n)
            padding = self._get_padding_width(i)
            if i in keys:
                column.no_wrap, column.min_width = True, max(1, column_width - padding)
            elif excess > 0:
                column.width = max(1, column_width - padding)
            part.columns.append(column)
        part.column_groups = [self.column_groups[i] for i in indexes]
        part.title = title
        part._laid_out = True
        return part


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, justify: str = "left") -> Table:
    """A rich table of already formatted cells; the first column names the rows (see `FitTable`)."""
    table = FitTable(title=title)
    for column in columns:
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same cells as a markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(reports: Mapping[str, EvalReport], title: str = "test accuracy (%)") -> Table:
    """One row per model, one column per (domain, level) plus a per-domain mean."""
    columns: list[tuple[str, int | None]] = []
    for report in reports.values():
        for domain, levels in report.by_domain_level.items():
            for level in levels:
                if (domain, level) not in columns:
                    columns.append((domain, level))
            if (domain, None) not in columns:
                columns.append((domain, None))
    columns.sort(key=lambda c: (c[0], c[1] if c[1] is not None else 99))
    table = FitTable(title=title)
    table.add_column("model")
    for domain, level in columns:
        table.add_column(f"{domain} L{level}" if level is not None else f"{domain} mean", justify="right", group=domain)
    for name, report in reports.items():
        cells = []
        by_level, by_domain = report.by_domain_level, report.by_domain
        for domain, level in columns:
            value = by_domain.get(domain) if level is None else by_level.get(domain, {}).get(level)
            cells.append(cell(value, 0))
        table.add_row(name, *cells)
    return table


def accuracy_grid(by_domain_level: Mapping[str, Mapping[int, float]], by_domain: Mapping[str, float],
                  levels: Sequence[int]) -> Table:
    """Accuracy (%) with one row per domain and one column per level, plus the domain's overall accuracy."""
    table = FitTable(title="accuracy (%) by domain and level")
    table.add_column("domain")
    for level in levels:
        table.add_column(f"L{level}", justify="right")
    table.add_column("all", justify="right", style="bold")
    for domain, per_level in by_domain_level.items():
        cells = [cell(per_level.get(level), 0) for level in levels]
        table.add_row(domain, *cells, cell(by_domain.get(domain, float("nan"))))
    return table
