"""evaluation.table: every accuracy table, in percent, with one way of formatting a cell."""

import io
import math

import pytest
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


def _fake_report(domains, levels, right: int) -> EvalReport:
    """Three tasks per (domain, level), `right` of them answered correctly."""
    items = [(f"{d}-{lvl}-{i}", d, lvl, float(i < right)) for d in domains for lvl in levels for i in range(3)]
    return EvalReport(items=items)


DOMAINS4 = ("arithmetic", "strings", "logic", "facts")
SEED_MODELS = ["base", "specialist_arithmetic", "specialist_strings", "specialist_logic"]
EVOMERGE_MODELS = ["champion", "uniform_linear", "specialist_arithmetic", "specialist_strings", "specialist_logic",
                   "base"]


@pytest.mark.parametrize("title, names", [
    ("seed: test accuracy (%) by domain and level", SEED_MODELS),  # the titles the stages print
    ("evomerge: test accuracy (%) by domain and level", EVOMERGE_MODELS),
])
@pytest.mark.parametrize("width", [100, 80, 60])
def test_stage_tables_fit_the_console_and_keep_every_name_whole(title, names, width):
    reports = {name: _fake_report(DOMAINS4, [1, 2, 3, 4], right=k % 4) for k, name in enumerate(names)}
    console = Console(width=width, record=True, file=io.StringIO())  # a file: what piped output gets
    console.print(accuracy_table(reports, title=title))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    for name in names:  # every model name whole, on one line, in every part of the table
        rows = [line for line in lines if f"│ {name} " in line]
        assert rows, f"{name} not found whole at width {width}:\n{text}"
    parts = text.count(title.split(":")[0] + ":")
    assert sum(line.count(f"│ {names[1]} ") for line in lines) == parts  # the name column repeats in each part
    for domain in DOMAINS4:  # column headers are never cut to "strin"
        assert domain in text
    if width == 100:
        assert parts <= 4


def test_a_table_that_fits_is_one_table_and_piped_output_is_whole():
    report = _fake_report(("logic",), [1, 2], right=2)
    buffer = io.StringIO()
    Console(file=buffer).print(accuracy_table({"specialist_arithmetic": report}, title="logic table"))  # not a tty
    text = buffer.getvalue()
    assert text.count("logic table") == 1 and "(1/" not in text
    assert "specialist_arithmetic" in text and "logic L1" in text and "logic mean" in text


def test_trajectory_status_and_row_tables_keep_their_first_column_whole():
    rows = [[f"specialist_{d}_with_a_long_name", "3.5", "a long description " * 4] for d in DOMAINS4]
    console = Console(width=60, record=True, file=io.StringIO())
    console.print(rows_table("t", ["model", "nll", "note"], rows))
    text = console.export_text()
    assert all(f"specialist_{d}_with_a_long_name" in text for d in DOMAINS4)
    assert max(len(line) for line in text.splitlines()) <= 60
