"""Rich tables of accuracy by domain and level, for several models side by side."""

from __future__ import annotations

from typing import Mapping

from rich.table import Table

from .report import EvalReport


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
    table = Table(title=title)
    table.add_column("model")
    for domain, level in columns:
        table.add_column(f"{domain[:5]} L{level}" if level is not None else f"{domain[:5]} mean", justify="right")
    for name, report in reports.items():
        cells = []
        by_level, by_domain = report.by_domain_level, report.by_domain
        for domain, level in columns:
            value = by_domain.get(domain) if level is None else by_level.get(domain, {}).get(level)
            cells.append("-" if value is None else f"{value:.0f}")
        table.add_row(name, *cells)
    return table
