"""Render a ranked board: terminal, Markdown, HTML, CSV and JSON.

Every user-supplied string (display names, agent strings) is escaped for the
format it lands in: HTML entities in the page, HTML entities and ``\\|`` in
Markdown (GitHub renders inline HTML), and a leading quote before ``= + - @``
in CSV text cells (spreadsheet formula injection). The HTML page is one
static file with inline CSS and JavaScript: click a column header to sort.
Every view has a ``state bytes`` column after the metrics, so that entries
are compared at their memory as well as their scores.

Example:
    >>> escape_markdown("a|<b>")
    'a\\\\|&lt;b&gt;'
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from replaybench.errors import ConfigError
from replaybench.leaderboards.ranking import CONFIDENCE, BoardTable, Interval, Row
from replaybench.redact import redact
from replaybench.results import format_bytes

FORMATS = ("md", "html", "csv", "json")
NA = "n/a"
STATE_BYTES = "state bytes"
"""The memory column: each entry's mean ``state_bytes`` over its runs (``ranking.mean_state_bytes``), n/a if unknown."""


@dataclass(frozen=True)
class MetricColumn:
    """A metric column of a board view: one stream's values, or the mean over the board's streams."""

    metric: str
    stream: str | None = None

    @property
    def key(self) -> str:
        return f"{self.metric}@{self.stream}" if self.stream else self.metric

    def label(self, table: BoardTable) -> str:
        arrow = "↑" if table.board.higher_is_better(self.metric) else "↓"
        if self.stream:
            return f"{self.metric} {self.stream} {arrow}"
        return f"{self.metric} (mean) {arrow}" if len(table.board.streams) > 1 else f"{self.metric} {arrow}"

    def value(self, row: Row) -> Interval | None:
        if self.stream:
            return row.per_stream.get(self.stream, {}).get(self.metric)
        return row.metrics.get(self.metric)


def only_metrics(table: BoardTable, metrics: Sequence[str]) -> BoardTable:
    """``table`` showing only ``metrics`` (and the primary metric, first), e.g. for a README."""
    b = table.board
    unknown = [m for m in metrics if m not in b.metrics]
    if unknown:
        raise ConfigError(f"Board {b.name!r} has no metric {unknown[0]!r}; it has {', '.join(b.metrics)}.")
    kept = (b.primary_metric, *(m for m in b.metrics if m in metrics and m != b.primary_metric))
    return replace(table, board=replace(b, metrics=kept))


def metric_columns(table: BoardTable) -> list[MetricColumn]:
    """The primary metric on each stream (when there are several), then every metric's mean over streams."""
    b = table.board
    per_stream = [MetricColumn(b.primary_metric, s) for s in b.stream_names] if len(b.streams) > 1 else []
    return [*per_stream, *(MetricColumn(m) for m in b.metrics)]


def _text(iv: Interval | None) -> str:
    return NA if iv is None else iv.text()


def _origin(row: Row) -> str:
    return "reference" if row.submission.origin == "reference" else ""


MARKDOWN_SPECIALS = "\\`*_[]()!#|~"
"""Characters that start Markdown syntax (links, images, code spans, emphasis, table cells): backslash-escaped."""


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown: HTML escaped, every syntax character backslash-escaped, one line.

    A display name like ``[x](javascript:…)`` or ``![x](http://…)`` renders as text, and a
    backtick or a ``|`` cannot open a code span or shift a table's cells. Secrets are redacted
    first: escaping would hide one with a syntax character (``ghp_…``) from a later redaction.
    """
    escaped = html.escape(redact(text), quote=False)
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIALS else c for c in escaped).replace("\n", " ")


def _csv_text(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _caption(table: BoardTable) -> str:
    b = table.board
    budget = ", ".join(f"{k} {v}" for k, v in b.budget.items()) or "the streams' own"
    return (
        f"Board {b.name} v{b.version}: ranked by {b.primary_metric} ({b.direction} is better); "
        f"mean ± half-width of the {CONFIDENCE:.0%} Student-t interval over seeds {list(b.seeds)}; "
        f"(mean) columns average the streams {', '.join(b.stream_names)} where the metric is defined; "
        f"{NA}: undefined (e.g. FWT on class-IL, forgetting after one experience). "
        f"{STATE_BYTES}: what an entry keeps across experiences besides its weights, mean over runs "
        f"({NA}: its agent does not count it). "
        f"Budget: {budget}; other options from each agent's preset, chosen on a validation split."
    )


def _notes(table: BoardTable) -> list[tuple[str, str]]:
    return [(r.submission.display_name, r.submission.note) for r in table.rows if r.submission.note]


def to_markdown(table: BoardTable) -> str:
    """A GitHub-flavoured Markdown table for READMEs."""
    b = table.board
    cols = metric_columns(table)
    head = ["Rank", "Name", "Agent", "Origin", *(c.label(table) for c in cols), STATE_BYTES.capitalize(), "Seeds"]
    head.append("Verified")
    lines = [
        f"**{escape_markdown(b.name)}** v{escape_markdown(b.version)}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---:", ":---", ":---", ":---"] + ["---:"] * (len(head) - 4)) + "|",
    ]
    for r in table.rows:
        cells = [
            str(r.rank),
            escape_markdown(r.submission.display_name),
            escape_markdown(r.submission.agent),  # no code span: escapes do not work inside one
            _origin(r),
            *(_text(c.value(r)) for c in cols),
            format_bytes(r.state_bytes),
            str(len(r.seeds)),
            "✓" if r.submission.verified else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", escape_markdown(_caption(table))]
    notes = _notes(table)
    if notes:
        lines += ["", "Notes:", ""] + [f"- {escape_markdown(name)}: {escape_markdown(note)}" for name, note in notes]
    return redact("\n".join(lines) + "\n")


def to_csv(table: BoardTable) -> str:
    """One row per submission: each metric column's mean, low and high, and the mean state bytes (empty where
    undefined or unknown)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = metric_columns(table)
    metric_cols = [f"{c.key}_{part}" for c in cols for part in ("mean", "low", "high")]
    writer.writerow(
        [
            "rank",
            "submission",
            "name",
            "agent",
            "origin",
            *metric_cols,
            "state_bytes_mean",
            "n_seeds",
            "verified",
            "config_hash",
            "source_hash",
            "note",
        ]
    )
    for r in table.rows:
        s = r.submission
        values = []
        for c in cols:
            iv = c.value(r)
            values += ["" if iv is None else f"{getattr(iv, part):.6g}" for part in ("mean", "low", "high")]
        writer.writerow(
            [
                r.rank,
                s.id,
                _csv_text(s.display_name),
                _csv_text(s.agent),
                s.origin,
                *values,
                "" if r.state_bytes is None else f"{r.state_bytes:.6g}",
                len(r.seeds),
                int(s.verified),
                s.config_hash,
                s.source_hash,
                _csv_text(s.note),
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
        _cell(html.escape(s.display_name), s.display_name, klass="text", title=s.note),
        _cell(f"<code>{html.escape(s.agent)}</code>", s.agent, klass="text"),
        _cell(_origin(r), _origin(r), klass="text"),
        _cell(f"#{s.id}", s.id),
    ]
    for c in metric_columns(table):
        iv = c.value(r)
        if iv is None:
            cells.append(_cell(NA, "", title="undefined"))
        else:
            cells.append(
                _cell(
                    html.escape(iv.text()),
                    f"{iv.mean:.12g}",
                    title=f"{CONFIDENCE:.0%} interval [{iv.low:.4f}, {iv.high:.4f}]",
                )
            )
    known = r.state_bytes is not None
    cells.append(
        _cell(format_bytes(r.state_bytes), f"{r.state_bytes:.12g}" if known else "", title="" if known else "unknown")
    )
    runs = [
        f'<a href="{html.escape(_wandb_url(path), quote=True)}">{html.escape(key)}</a>'
        for key, path in sorted(r.links.items())
    ]
    cells += [
        _cell(str(len(r.seeds)), len(r.seeds)),
        _cell("✓" if s.verified else "", int(s.verified)),
        _cell(" ".join(runs), len(runs), klass="text"),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _wandb_url(path: str) -> str:
    """A W&B run's page; offline runs (a local folder) have none and link to nothing."""
    if path.startswith(("http://", "https://")):
        return path
    parts = path.strip("/").split("/")
    return f"https://wandb.ai/{'/'.join(parts[:2])}/runs/{parts[-1]}" if len(parts) == 3 else "#"


def to_html(table: BoardTable) -> str:
    """A static, self-contained page with a sortable table."""
    b = table.board
    labels = ["rank", "name", "agent", "origin", "#", *(c.label(table) for c in metric_columns(table)), STATE_BYTES]
    labels += ["seeds", "verified", "W&B runs"]
    text_columns = ("name", "agent", "origin", "W&B runs")
    heads = [f"<th{' class=text' if label in text_columns else ''}>{html.escape(label)}</th>" for label in labels]
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
{_html_notes(table)}
<script>{_SCRIPT}</script>
</body>
</html>
"""
    return redact(page)


def _html_notes(table: BoardTable) -> str:
    notes = _notes(table)
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(name)}: {html.escape(note)}</li>" for name, note in notes)
    return f"<h2>Notes</h2>\n<ul>{items}</ul>"


def render(table: BoardTable, fmt: str) -> str:
    """The board in ``fmt`` (one of :data:`FORMATS`)."""
    return {"md": to_markdown, "html": to_html, "csv": to_csv, "json": to_json}[fmt](table)


def print_table(table: BoardTable, *, highlight: int | None = None, file: object = None) -> None:
    """Print the board in the terminal; the ``highlight`` submission is marked with '→'."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    b = table.board
    cols = metric_columns(table)
    t = Table(
        title=f"{b.name} v{b.version}: ranked by {b.primary_metric} ({b.direction} is better)",
        caption=f"mean ± {CONFIDENCE:.0%} Student-t interval over seeds; {NA}: undefined or unknown",
    )
    for label in (
        "rank",
        "name",
        "agent",
        "origin",
        "#",
        *(c.label(table) for c in cols),
        STATE_BYTES,
        "seeds",
        "verified",
    ):
        t.add_column(label, justify="left" if label in ("name", "agent", "origin") else "right")
    for r in table.rows:
        s = r.submission
        mark = "→ " if s.id == highlight else ""
        t.add_row(
            f"{mark}{r.rank}",
            escape(s.display_name),
            escape(s.agent),
            _origin(r),
            f"#{s.id}",
            *(_text(c.value(r)) for c in cols),
            format_bytes(r.state_bytes),
            str(len(r.seeds)),
            "✓" if s.verified else "",
            style="bold green" if s.id == highlight else None,
        )
    out = file if file is not None else sys.stdout
    console = Console(file=out, width=None if out.isatty() else 240)  # don't squeeze piped tables
    console.print(t)
    if not table.rows:
        console.print(f"No complete submissions to {escape(b.name)} v{escape(b.version)} yet.")
    for name, note in _notes(table):
        console.print(f"note: {escape(name)}: {escape(note)}")
    if table.hidden_partial:
        console.print(f"({table.hidden_partial} submission(s) without every stream × seed of the board not shown.)")
    if table.hidden_other_versions:
        console.print(f"({table.hidden_other_versions} submission(s) to other versions of {escape(b.name)} not shown.)")


def rows_for_wandb(table: BoardTable) -> tuple[list[str], list[list[object]]]:
    """Columns and data of the board as a flat table (mean, low, high per metric column, the mean state bytes;
    None where undefined or unknown)."""
    cols = metric_columns(table)
    metric_cols = [f"{c.key}_{part}" for c in cols for part in ("mean", "low", "high")]
    columns = ["rank", "submission", "name", "agent", "origin", *metric_cols, "state_bytes_mean", "n_seeds"]
    columns += ["verified", "config_hash"]
    data: list[list[object]] = []
    for r in table.rows:
        s = r.submission
        values: list[object] = []
        for c in cols:
            iv = c.value(r)
            values += [None if iv is None else getattr(iv, part) for part in ("mean", "low", "high")]
        data.append(
            [r.rank, s.id, s.display_name, s.agent, s.origin, *values, r.state_bytes, len(r.seeds)]
            + [bool(s.verified), s.config_hash]
        )
    return columns, redact(data)
