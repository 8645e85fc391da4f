"""Render a ranked board: terminal, Markdown, HTML, CSV and JSON.

Every user-supplied string (display names, agent strings) is escaped for the
format it lands in: HTML entities in the page, HTML entities and ``\\|`` in
Markdown (GitHub renders inline HTML), and a leading quote before ``= + - @``
in CSV text cells (spreadsheet formula injection). The HTML page is one
static file with inline CSS and JavaScript: click a column header to sort.

Example:
    >>> escape_markdown("a|<b>")
    'a\\\\|&lt;b&gt;'
"""

from __future__ import annotations

import csv
import html
import io
import json

from replaybench.leaderboards.ranking import CONFIDENCE, BoardTable, Row
from replaybench.leaderboards.redact import redact

FORMATS = ("md", "html", "csv", "json")


def _columns(table: BoardTable) -> list[str]:
    return ["rank", "name", "agent", "submission", *table.board.metrics, "seeds", "verified"]


def _arrow(table: BoardTable, metric: str) -> str:
    return "↑" if table.board.higher_is_better(metric) else "↓"


def escape_markdown(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _csv_text(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _caption(table: BoardTable) -> str:
    b = table.board
    return (
        f"Board {b.name} v{b.version}: ranked by {b.primary_metric} ({b.direction} is better); "
        f"mean ± half-width of the {CONFIDENCE:.0%} bootstrap interval over seeds {list(b.seeds)}, "
        f"averaged over streams {', '.join(b.stream_names)}."
    )


def to_markdown(table: BoardTable) -> str:
    """A GitHub-flavoured Markdown table for READMEs."""
    b = table.board
    head = ["Rank", "Name", "Agent", *(f"{m} {_arrow(table, m)}" for m in b.metrics), "Seeds", "Verified"]
    lines = [
        f"**{escape_markdown(b.name)}** v{escape_markdown(b.version)}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---:", ":---", ":---"] + ["---:"] * (len(head) - 3)) + "|",
    ]
    for r in table.rows:
        cells = [
            str(r.rank),
            escape_markdown(r.submission.display_name),
            f"`{escape_markdown(r.submission.agent)}`",
            *(r.metrics[m].text() for m in b.metrics),
            str(len(r.seeds)),
            "✓" if r.submission.verified else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", escape_markdown(_caption(table))]
    return redact("\n".join(lines) + "\n")


def to_csv(table: BoardTable) -> str:
    """One row per submission: each metric's mean, low and high."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    metric_cols = [f"{m}_{part}" for m in table.board.metrics for part in ("mean", "low", "high")]
    writer.writerow(
        ["rank", "submission", "name", "agent", *metric_cols, "n_seeds", "verified", "config_hash", "source_hash"]
    )
    for r in table.rows:
        s = r.submission
        values = [f"{getattr(r.metrics[m], part):.6g}" for m in table.board.metrics for part in ("mean", "low", "high")]
        writer.writerow(
            [
                r.rank,
                s.id,
                _csv_text(s.display_name),
                _csv_text(s.agent),
                *values,
                len(r.seeds),
                int(s.verified),
                s.config_hash,
                s.source_hash,
            ]
        )
    return redact(buf.getvalue())


def to_json(table: BoardTable) -> str:
    return json.dumps(redact(table.to_dict()), indent=1) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; }
th[aria-sort=descending]::after { content: " ▼"; }
td.text, th.text { text-align: left; white-space: normal; }
caption { caption-side: bottom; padding-top: 0.8em; font-size: 0.9em; color: #555; text-align: left; }
code { font-size: 0.9em; }
"""

# Sorts by each cell's data-sort value (numbers numerically, text by locale);
# a second click on the same header reverses the order.
_SCRIPT = """
document.querySelectorAll("table.board th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y), c;
      if (!isNaN(nx) && !isNaN(ny)) { c = nx - ny; } else { c = x.localeCompare(y); }
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _cell(text: str, sort: object, *, klass: str = "", title: str = "") -> str:
    attrs = f' data-sort="{html.escape(str(sort), quote=True)}"'
    if klass:
        attrs += f' class="{klass}"'
    if title:
        attrs += f' title="{html.escape(title, quote=True)}"'
    return f"<td{attrs}>{text}</td>"


def _html_row(table: BoardTable, r: Row) -> str:
    s = r.submission
    cells = [
        _cell(str(r.rank), r.rank),
        _cell(html.escape(s.display_name), s.display_name, klass="text"),
        _cell(f"<code>{html.escape(s.agent)}</code>", s.agent, klass="text"),
        _cell(f"#{s.id}", s.id),
    ]
    for m in table.board.metrics:
        iv = r.metrics[m]
        cells.append(
            _cell(
                html.escape(iv.text()),
                f"{iv.mean:.12g}",
                title=f"{CONFIDENCE:.0%} interval [{iv.low:.4f}, {iv.high:.4f}]",
            )
        )
    cells += [_cell(str(len(r.seeds)), len(r.seeds)), _cell("✓" if s.verified else "", int(s.verified))]
    return "<tr>" + "".join(cells) + "</tr>"


def to_html(table: BoardTable) -> str:
    """A static, self-contained page with a sortable table."""
    b = table.board
    heads = []
    for col in _columns(table):
        label = f"{col} {_arrow(table, col)}" if col in b.metrics else col
        klass = ' class="text"' if col in ("name", "agent") else ""
        heads.append(f"<th{klass}>{html.escape(label)}</th>")
    streams = "".join(
        f"<li><code>{html.escape(s.name)}</code> fingerprint <code>{html.escape(s.fingerprint)}</code></li>"
        for s in b.streams
    )
    title = html.escape(f"replaybench leaderboard: {b.name} v{b.version}")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p>{html.escape(b.description)}</p>
<table class="board" id="board">
<caption>{html.escape(_caption(table))} Click a column header to sort.</caption>
<thead><tr>{"".join(heads)}</tr></thead>
<tbody>
{chr(10).join(_html_row(table, r) for r in table.rows)}
</tbody>
</table>
<h2>Streams</h2>
<ul>{streams}</ul>
<script>{_SCRIPT}</script>
</body>
</html>
"""
    return redact(page)


def render(table: BoardTable, fmt: str) -> str:
    """The board in ``fmt`` (one of :data:`FORMATS`)."""
    return {"md": to_markdown, "html": to_html, "csv": to_csv, "json": to_json}[fmt](table)


def print_table(table: BoardTable, *, highlight: int | None = None, file: object = None) -> None:
    """Print the board in the terminal; the ``highlight`` submission is marked with '→'."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    b = table.board
    t = Table(
        title=f"{b.name} v{b.version}: ranked by {b.primary_metric} ({b.direction} is better)",
        caption=f"mean ± {CONFIDENCE:.0%} bootstrap interval over seeds",
    )
    for col in _columns(table):
        label = f"{col} {_arrow(table, col)}" if col in b.metrics else col
        t.add_column(label, justify="left" if col in ("name", "agent") else "right")
    for r in table.rows:
        s = r.submission
        mark = "→ " if s.id == highlight else ""
        t.add_row(
            f"{mark}{r.rank}",
            escape(s.display_name),
            escape(s.agent),
            f"#{s.id}",
            *(r.metrics[m].text() for m in b.metrics),
            str(len(r.seeds)),
            "✓" if s.verified else "",
            style="bold green" if s.id == highlight else None,
        )
    import sys

    out = file if file is not None else sys.stdout
    console = Console(file=out, width=None if out.isatty() else 200)  # don't squeeze piped tables
    console.print(t)
    if not table.rows:
        console.print(f"No complete submissions to {escape(b.name)} v{escape(b.version)} yet.")
    if table.hidden_partial:
        console.print(f"({table.hidden_partial} submission(s) without every stream × seed of the board not shown.)")
    if table.hidden_other_versions:
        console.print(f"({table.hidden_other_versions} submission(s) to other versions of {escape(b.name)} not shown.)")


def rows_for_wandb(table: BoardTable) -> tuple[list[str], list[list[object]]]:
    """Columns and data of the board as a flat table (mean, low, high per metric)."""
    metric_cols = [f"{m}_{part}" for m in table.board.metrics for part in ("mean", "low", "high")]
    columns = ["rank", "submission", "name", "agent", *metric_cols, "n_seeds", "verified", "config_hash"]
    data: list[list[object]] = []
    for r in table.rows:
        s = r.submission
        data.append(
            [
                r.rank,
                s.id,
                s.display_name,
                s.agent,
                *(getattr(r.metrics[m], part) for m in table.board.metrics for part in ("mean", "low", "high")),
                len(r.seeds),
                bool(s.verified),
                s.config_hash,
            ]
        )
    return columns, redact(data)
