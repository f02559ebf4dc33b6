"""evaluation.table: every accuracy table, in percent, with one way of formatting a cell."""

import math

from rich.console import Console

from agent_forge.evaluation import EvalReport, percent
from agent_forge.evaluation.table import accuracy_grid, accuracy_table, cell, markdown_table, rows_table


def _text(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_percent_and_cells():
    assert percent(7 / 12) == 58.33 and percent(1) == 100.0
    assert cell(58.333) == "58.3" and cell(0.5031, 3) == "0.503" and cell(71.5, 0) == "72"
    assert cell(None) == "-" and cell(math.nan) == "-" and cell("x") == "x"


def test_markdown_and_rich_tables_of_formatted_cells():
    expected = "| model | acc |\n|---|---|\n| a | 1.0 |\n| b | - |"
    assert markdown_table(["model", "acc"], [["a", "1.0"], ["b", "-"]]) == expected
    text = _text(rows_table("t", ["model", "acc"], [["a", "1.0"]], justify="right"))
    assert "model" in text and "1.0" in text


def test_accuracy_tables_show_percentages():
    report = EvalReport(items=[("1", "logic", 1, 1.0), ("2", "logic", 1, 0.0), ("3", "logic", 2, 1.0)])
    grid = _text(accuracy_grid(report.by_domain_level, report.by_domain, [1, 2, 3]))
    assert "50" in grid and "100" in grid and "66.7" in grid and "-" in grid
    side_by_side = _text(accuracy_table({"m": report}))
    assert "logic L1" in side_by_side and "logic mean" in side_by_side and "67" in side_by_side
