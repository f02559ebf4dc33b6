"""`report.html`: one self-contained page per run (inline CSS, inline SVG plots, PNGs as data URIs, no script).

Sections: the run (name, config hash, seed, versions, each invocation's command and threads); accuracy by stage (domain-mean suite accuracy of the
model each stage received and left, and each domain's accuracy of the model it left); accuracy by domain and
level of each stage's leaving model (heatmaps); the trajectory table; each stage's own tables and its plots.
The numbers come from `pipeline.report` (the same cells the terminal and markdown show); plots are drawn with
matplotlib's `Figure` (no pyplot state, no display) and written as SVG with text kept as text.

Exercise: `agent-forge report runs/tiny`, then open `runs/tiny/report.html`.
"""

from __future__ import annotations

import base64
import io
import re
from html import escape

from .report import (
    NOT_RECORDED, TRAJECTORY_TITLE, RunData, StageData, has_perplexity, invocation_lines, main_measurement,
    perplexity_note, trajectory_columns, trajectory_rows,
)
from .report_stages import stage_tables
from .runner import format_duration

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { margin-bottom: 0.4em; }
.meta { color: #57606a; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f6f8fa; text-align: center; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; }
tr.sub td { color: #57606a; } tr.sub td:first-child { padding-left: 2em; }
.flag-ok { color: #1a7f37; } .flag-declared { color: #9a6700; } .flag-undeclared { color: #cf222e; font-weight: bold; }
.note { max-width: 70em; } .warning { color: #9a6700; }
figure { margin: 0.5em 0 1em; } figure svg, figure img { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: 0.85em; }
.grid, .plots { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { flex: 0 1 560px; }
.plots figure { flex: 0 1 auto; }
code { background: #f6f8fa; padding: 0.1em 0.3em; border-radius: 3px; }
"""


# ----------------------------------------------------------------------------------------------- plots


def _svg(fig, salt: str) -> str:
    """The figure as an inline <svg> element (no XML prolog); `salt` keeps element ids unique on the page."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def accuracy_plot(run: RunData) -> str | None:
    """Left: domain-mean suite accuracy entering -> leaving per stage; right: each domain's leaving accuracy."""
    from matplotlib.figure import Figure

    stages = [s for s in run.stages if main_measurement(s) is not None]
    if not stages:
        return None
    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    xs = list(range(len(stages)))
    leaving = [main_measurement(s)["suite"]["domain_mean"] for s in stages]
    labelled = False
    for x, stage in zip(xs, stages):
        entering = (stage.trajectory.get("entering") or {}).get("measurement")
        if entering:
            before = entering["suite"]["domain_mean"]
            left.annotate("", xy=(x, leaving[x]), xytext=(x - 0.3, before),
                          arrowprops={"arrowstyle": "->", "color": "tab:gray"})
            left.plot([x - 0.3], [before], "o", color="tab:gray", mfc="white", label=None if labelled else "entering")
            labelled = True
    left.plot(xs, leaving, "o-", color="tab:blue", label="leaving")
    for x, y in zip(xs, leaving):
        left.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    left.set_title("suite accuracy, mean over domains (%)")
    domains = sorted({d for s in stages for d in main_measurement(s)["suite"]["by_domain"]})
    for domain in domains:
        right.plot(xs, [main_measurement(s)["suite"]["by_domain"].get(domain) for s in stages], "o-", label=domain)
    right.set_title("suite accuracy of the leaving model, by domain (%)")
    for ax in (left, right):
        ax.set_xticks(xs, [s.name for s in stages])
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _svg(fig, "accuracy")


def heatmap(stage: StageData) -> str | None:
    """Accuracy (%) by domain (rows) and level (columns) of the model the stage left."""
    from matplotlib.figure import Figure

    measurement = main_measurement(stage)
    grid = ((measurement or {}).get("suite") or {}).get("by_domain_level")
    if not grid:
        return None
    domains = list(grid)
    levels = sorted({int(level) for per in grid.values() for level in per})
    values = [[grid[d].get(str(level), float("nan")) for level in levels] for d in domains]
    fig = Figure(figsize=(0.42 * len(levels) + 1.8, 0.42 * len(domains) + 1.1))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 60 else "black")
    ax.set_xticks(range(len(levels)), [str(level) for level in levels], fontsize=8)
    ax.set_yticks(range(len(domains)), domains, fontsize=8)
    ax.set_xlabel("level", fontsize=8)
    key = stage.trajectory.get("main_output")
    ax.set_title(f"{stage.name}" + (f" ({key})" if key and key != "model" else ""), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _svg(fig, f"heatmap-{stage.name}")


# ------------------------------------------------------------------------------------------------ html


def _table(columns: list[str], rows: list[list[str]], *, table_id: str | None = None, row_classes=None,
           cell_classes=None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = []
        for j, value in enumerate(row):
            klass = (cell_classes[i][j] if cell_classes else None) or ("text" if not _numeric(value) else "")
            cells.append(f'<td class="{klass}">{escape(value)}</td>' if klass else f"<td>{escape(value)}</td>")
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_NUMERIC = re.compile(r"[-+]?[\d.,/]+(s|m\d\ds|h\d\dm)?|-|")


def _numeric(value: str) -> bool:
    """Numbers, durations and empty cells are right-aligned; text is left-aligned."""
    return _NUMERIC.fullmatch(value) is not None


def _png(path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def render_html(run: RunData) -> str:
    m = run.manifest
    versions = ", ".join(f"{k} {v}" for k, v in (m.versions or {}).items() if v)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>agent-forge report: {escape(m.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>agent-forge run <code>{escape(m.name)}</code></h1>",
        f'<p class="meta">config {escape(m.config_hash)}, seed {m.seed}, created {escape(m.created_at)}, '
        f"updated {escape(m.updated_at)}; {escape(versions)}</p>",
        *(f'<p class="meta">{escape(line)}</p>' for line in invocation_lines(run, quote='"')),
    ]
    status = [[s.name, s.status, format_duration(s.duration_s)] for s in run.stages]
    out.append(_table(["stage", "status", "duration"], status, table_id="stages"))

    rows = trajectory_rows(run)
    out.append('<h2 id="accuracy">Accuracy by stage</h2>')
    if rows:
        plot = accuracy_plot(run)
        if plot:
            out.append(f'<figure class="plot">{plot}<figcaption>Suite accuracy (test split, every domain and '
                       "level, fast teacher-forced path) of the model each stage received (grey) and left (blue); "
                       "right: the leaving model's accuracy per domain.</figcaption></figure>")
        out.append('<h2 id="heatmaps">Accuracy by domain and level of each stage\'s leaving model</h2><div class="grid">')
        for stage in run.stages:
            svg = heatmap(stage) if stage.trajectory else None
            if svg:
                out.append(f'<figure class="plot">{svg}<figcaption>{escape(stage.name)}: accuracy (%) by domain '
                           "and level</figcaption></figure>")
        out.append("</div>")
        out.append(f'<h2 id="trajectory-heading">Trajectory</h2><p class="note">{escape(TRAJECTORY_TITLE)}; '
                   "change in points; a stage that loses more than the allowed drop without declaring a trade-off "
                   "is flagged.</p>")
        columns, ppl = trajectory_columns(rows), has_perplexity(rows)
        flag_classes = [[None] * 4 + [f"text flag-{r.flag}" if r.flag in ("ok", "declared", "undeclared") else "text"]
                        + [None] * (len(columns) - 5) for r in rows]
        out.append(_table(columns, [r.cells(ppl) for r in rows], table_id="trajectory",
                          row_classes=["sub" if r.sub else "" for r in rows], cell_classes=flag_classes))
        if ppl:
            out.append(f'<p class="note">{escape(perplexity_note(run))}</p>')
    else:
        out.append(f'<p class="warning" id="no-trajectory">{escape(NOT_RECORDED)}</p>')

    out.append('<h2 id="stages-heading">Stages</h2>')
    tables = {t.stage: t for t in stage_tables(run)}
    for stage in run.stages:
        table = tables.get(stage.name)
        if table is None and not stage.plots:
            continue
        out.append(f'<section class="stage" id="stage-{escape(stage.name)}"><h3>'
                   f"{escape(table.heading if table else stage.name)}</h3>")
        if table is not None:
            if table.columns:
                out.append(_table(table.columns, table.rows))
            if table.note:
                out.append(f'<p class="note">{escape(table.note)}</p>')
        if stage.plots:
            out.append('<div class="plots">')
            out.extend(_png(p, f"{stage.dir.name}/{p.relative_to(stage.dir).as_posix()}") for p in stage.plots)
            out.append("</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
