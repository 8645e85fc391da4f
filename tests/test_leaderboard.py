"""Boards, store, ranking and exports, on synthetic results (no training)."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from replaybench.errors import ConfigError, ReplaybenchError, UnknownNameError
from replaybench.leaderboards import export
from replaybench.leaderboards.boards import board_names, load_board, parse_board, pin_fingerprints
from replaybench.leaderboards.ranking import board_table, seed_interval
from replaybench.leaderboards.store import MIGRATIONS, SCHEMA_VERSION, Store
from replaybench.metrics import summarize
from replaybench.results import RunResult

FP1, FP2 = "a1" * 32, "b2" * 32


def board_data(**overrides):
    data = {
        "name": "t",
        "version": "1",
        "seeds": [0, 1, 2],
        "metrics": ["acc", "forgetting_max"],
        "primary_metric": "acc",
        "direction": "higher",
        "streams": {"s1": {"fingerprint": FP1}, "s2": {"fingerprint": FP2}},
    }
    data.update(overrides)
    return data


def make_board(**overrides):
    return parse_board(board_data(**overrides))


def make_result(stream="s1", seed=0, acc=0.5, forgetting=0.2, fingerprint=None, agent="naive"):
    """A class-IL result with ACC ``acc`` and forgetting ``forgetting``; its metrics are those of its R."""
    fingerprint = fingerprint if fingerprint is not None else {"s1": FP1, "s2": FP2}.get(stream, FP1)
    R = [[acc - 0.1 + forgetting, 0.0], [acc - 0.1, acc + 0.1]]
    return RunResult(
        spec={"stream": stream, "agent": agent, "seed": seed},
        R=R,
        baseline=[0.1, 0.1],
        metrics=summarize(R, [0.1, 0.1], scenario="class-il"),
        costs={"wall_seconds": 1.0},
        provenance={
            "scenario": "class-il",
            "stream_fingerprint": fingerprint,
            "stream_version": "1",
            "git_commit": "abc123",
            "seed": seed,
            "replaybench_version": "0.1.0",
            "torch_version": "2.x",
            "hardware": {"cpu_count": 2},
            "config": {"lr": 0.1},
        },
    )


def submit(store, board, name, accs, forgetting=0.2, streams=("s1", "s2")):
    """A complete submission whose seed s scores accs[s] on every stream."""
    sid = store.add_submission(
        board=board,
        display_name=name,
        agent="naive",
        config={"lr": 0.1},
        config_hash="c" * 64,
        source_hash="d" * 64,
        source_files={"a.py": "e" * 64},
    )
    for seed, acc in zip(board.seeds, accs):
        for s in streams:
            store.add_run(sid, board, make_result(s, seed, acc, forgetting))
    store.finish_submission(sid, "complete")
    return sid


# --- boards -----------------------------------------------------------------------
def test_builtin_boards_load_and_quick_is_pinned():
    assert {"quick", "standard-supervised", "rl", "sequence"} <= set(board_names())
    quick = load_board("quick")
    assert quick.stream_names == ["split-digits"] and quick.primary_metric == "acc"
    assert all(s.fingerprint for s in quick.streams)
    std = load_board("standard-supervised")
    assert std.stream_names == ["split-fmnist", "permuted-fmnist", "split-mnist5k"]
    assert load_board("rl").stream_names == ["cartpole-conflict", "minigrid-sequence"]
    assert load_board("sequence").stream_names == ["vb-compose", "flipflop-periods"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"colour": "red"}, "Unknown key 'colour'"),
        ({"name": "../evil"}, "'name' key"),
        ({"name": "Bad Name"}, "'name' key"),
        ({"version": ""}, "'version' key"),
        ({"seeds": []}, "'seeds' key"),
        ({"seeds": [0, 0]}, "'seeds' key"),
        ({"seeds": [-1]}, "'seeds' key"),
        ({"seeds": [True]}, "'seeds' key"),
        ({"metrics": ["accc"]}, "Did you mean 'acc'"),
        ({"primary_metric": "bwt"}, "'primary_metric' key"),
        ({"direction": "up"}, "'direction' key"),
        ({"direction": "lower"}, "higher-is-better"),
        ({"streams": {}}, "'streams' key"),
        ({"streams": {"s1": "abc"}}, "must be a table"),
        ({"streams": {"s1": {"fingerprint": "not-hex"}}}, "hex digest"),
        ({"streams": {"s1": {"fingerprint": FP1, "seed": 3}}}, "Unknown key 'seed'"),
        ({"budget": {"lr": 0.1}}, "fixes only epochs, batch_size, memory_bytes"),
        ({"budget": {"epochs": 0}}, "must be an int >= 1"),
        ({"agent_options": {"epochs": 1}}, "Unknown key 'agent_options'"),
    ],
)
def test_bad_board_fields_are_refused_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_board(**overrides)
    assert "\n" not in str(info.value)


def test_missing_key_unknown_board_and_malformed_file(tmp_path):
    data = board_data()
    del data["seeds"]
    with pytest.raises(ConfigError, match="lacks the required key 'seeds'"):
        parse_board(data)
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        load_board("quik")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="Malformed board file"):
        load_board(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_board(str(tmp_path / "absent.toml"))


def test_budget_is_limited_to_declared_fields():
    board = make_board(budget={"epochs": 3, "memory_bytes": 900})
    assert board.budget_for({"epochs", "lr", "memory_bytes"}) == {"epochs": 3, "memory_bytes": 900}
    assert board.budget_for({"lr", "memory_size"}) == {}


def test_fingerprint_check_refuses_mismatch_and_unpinned():
    board = make_board(streams={"s1": {"fingerprint": FP1}, "s2": {"fingerprint": ""}})
    board.check_fingerprint("s1", FP1)
    with pytest.raises(ConfigError, match="fingerprint .* but board 't' v1 pins"):
        board.check_fingerprint("s1", FP2)
    with pytest.raises(ConfigError, match="leaderboard pin t"):
        board.check_fingerprint("s2", FP2)


def test_pin_rewrites_only_fingerprint_lines(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(
        textwrap.dedent("""\
        name = "t"  # a comment
        [streams.s1]
        fingerprint = ""
        options = { n = 1 }
        [streams."s2"]
        [budget]
        epochs = 2
        """)
    )
    text = pin_fingerprints(path, {"s1": FP1, "s2": FP2})
    assert f'[streams.s1]\nfingerprint = "{FP1}"\noptions = {{ n = 1 }}' in text
    assert f'[streams."s2"]\nfingerprint = "{FP2}"\n[budget]' in text
    assert 'name = "t"  # a comment' in text and text.count("fingerprint") == 2


# --- ranking ----------------------------------------------------------------------
def test_seed_interval_is_the_student_t_interval():
    iv = seed_interval([0.70, 0.72, 0.74])
    # t_{0.95, 2} = 2.919986; s = 0.02; half = 2.919986 * 0.02 / sqrt(3)
    assert iv.mean == pytest.approx(0.72) and iv.half_width == pytest.approx(2.919986 * 0.02 / np.sqrt(3), rel=1e-5)
    assert (iv.low, iv.high, iv.n) == (pytest.approx(0.72 - iv.half_width), pytest.approx(0.72 + iv.half_width), 3)
    assert seed_interval([0.25, 0.25, 0.25]).half_width == 0.0
    one = seed_interval([0.7])
    assert one.mean == 0.7 and np.isnan(one.half_width) and one.text() == "0.700"
    assert one.to_dict()["half_width"] is None  # strict JSON: no NaN


def test_t_interval_covers_the_mean_about_as_often_as_it_claims():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        iv = seed_interval(rng.normal(0.0, 1.0, 3))
        hits += iv.low <= 0.0 <= iv.high
    assert 0.87 <= hits / 2000 <= 0.93  # a percentile bootstrap over 3 seeds covers ~60%


def test_ranking_order_ties_and_direction():
    board = make_board()
    with Store(":memory:") as store:
        a = submit(store, board, "a", [0.8, 0.8, 0.8])
        b = submit(store, board, "b", [0.9, 0.9, 0.9])
        c = submit(store, board, "c", [0.1 + 0.7, 0.8, 0.8])  # 0.1 + 0.7 != 0.8 in floats: still a tie
        d = submit(store, board, "d", [0.7, 0.7, 0.7])
        rows = board_table(board, store).rows
        assert [(r.submission.id, r.rank) for r in rows] == [(b, 1), (a, 2), (c, 2), (d, 4)]
    low = make_board(primary_metric="forgetting_max", direction="lower")
    with Store(":memory:") as store:
        e = submit(store, low, "e", [0.5] * 3, forgetting=0.3)
        f = submit(store, low, "f", [0.9] * 3, forgetting=0.6)
        g = submit(store, low, "g", [0.2] * 3, forgetting=0.1)
        assert [(r.submission.id, r.rank) for r in board_table(low, store).rows] == [(g, 1), (e, 2), (f, 3)]


def test_seed_value_is_mean_over_streams_and_incomplete_runs_are_not_ranked():
    board = make_board()
    with Store(":memory:") as store:
        sid = store.add_submission(
            board=board, display_name="x", agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
        )
        for seed, (a1, a2) in enumerate([(0.2, 0.4), (0.6, 0.8), (0.5, 0.5)]):
            store.add_run(sid, board, make_result("s1", seed, a1))
            store.add_run(sid, board, make_result("s2", seed, a2))
        assert board_table(board, store).rows == ()  # still 'running'
        store.finish_submission(sid, "complete")
        (row,) = board_table(board, store).rows
        assert row.metrics["acc"].mean == pytest.approx(np.mean([0.3, 0.7, 0.5]))
        assert row.per_stream["s2"]["acc"].mean == pytest.approx(np.mean([0.4, 0.8, 0.5]))
        assert row.seeds == (0, 1, 2)
        short = submit(store, board, "two seeds", [0.9, 0.9])  # complete, but seed 2 is missing
        table = board_table(board, store)
        assert [r.submission.id for r in table.rows] == [sid] and table.hidden_partial == 1
        assert short not in [r.submission.id for r in table.rows]


# --- store ------------------------------------------------------------------------
def test_run_rows_carry_provenance_and_quotes_are_data(tmp_path):
    board = make_board()
    name = "O'Brien\"; DROP TABLE runs; --"
    with Store(tmp_path / "s.sqlite") as store:
        sid = store.add_submission(
            board=board,
            display_name=name,
            agent="pkg.mod:It's",
            config={"k": "a'b"},
            config_hash="c",
            source_hash="d",
            source_files={},
        )
        result = make_result("s1", 0, 0.5)
        store.add_run(sid, board, result)
        sub = store.submission(sid)
        assert (sub.display_name, sub.agent, sub.config) == (name, "pkg.mod:It's", {"k": "a'b"})
        (run,) = store.runs(sid)
        assert run.provenance == result.provenance and run.R == result.R
        expected = {"acc": 0.5, "forgetting_max": 0.2, "forgetting_first_last": 0.2, "bwt": -0.2, "plasticity": 0.6}
        assert run.metrics == pytest.approx(expected) and "fwt" not in run.metrics  # class-IL: undefined
        assert store.count("runs") == 1 and store.submissions("t", status=None)[0].display_name == name
    row = (
        sqlite3.connect(tmp_path / "s.sqlite")
        .execute("SELECT git_commit, stream_fingerprint, torch_version FROM runs")
        .fetchone()
    )
    assert row == ("abc123", FP1, "2.x")


def test_mismatched_results_are_refused():
    board = make_board()
    with Store(":memory:") as store:
        sid = store.add_submission(
            board=board, display_name="x", agent="naive", config={}, config_hash="c", source_hash="d", source_files={}
        )
        with pytest.raises(ConfigError, match="fingerprint"):
            store.add_run(sid, board, make_result("s1", 0, fingerprint=FP2))
        with pytest.raises(ConfigError, match="v1, not 't' v2"):
            store.add_run(sid, make_board(version="2"), make_result("s1", 0))
        with pytest.raises(ConfigError, match="Seed 7"):
            store.add_run(sid, board, make_result("s1", 7))
        with pytest.raises(UnknownNameError, match="no stream 'zz'"):
            store.add_run(sid, board, make_result("zz", 0))
        assert store.count("runs") == 0


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101, "tab\there"])
def test_bad_display_names_are_refused(name):
    with Store(":memory:") as store, pytest.raises(ConfigError, match="display name"):
        store.add_submission(
            board=make_board(),
            display_name=name,
            agent="naive",
            config={},
            config_hash="c",
            source_hash="d",
            source_files={},
        )


def test_old_schema_is_migrated_and_newer_schema_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute(
        "INSERT INTO submissions (board, board_version, display_name, agent, config_json, config_hash, "
        "source_hash, source_files_json, status, created) VALUES ('t', '1', 'old', 'naive', '{}', 'c', "
        "'d', '{}', 'complete', 'then')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.count("sweep_runs") == 0
        (old,) = store.submissions("t")
        assert old.display_name == "old" and old.verified is False
        assert (old.origin, old.note) == ("user", "")  # migration 5: entries made before references are the user's
        store.set_verified(old.id, True)
        assert store.submission(old.id).verified
    db = sqlite3.connect(path)
    assert {"wandb_run", "wandb_artifact"} <= {c[1] for c in db.execute("PRAGMA table_info(runs)")}
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(ReplaybenchError, match="newer"):
        Store(path)
    with pytest.raises(ConfigError, match="is a folder"):
        Store(tmp_path)


CONCURRENT_WRITER = """
import sys, time
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from test_leaderboard import make_board, make_result
from replaybench.leaderboards.store import Store
board = make_board(seeds=list(range(40)))
store = Store(sys.argv[1])
barrier = Path(sys.argv[2])
(barrier / sys.argv[3]).touch()
deadline = time.time() + 120
while len(list(barrier.iterdir())) < 2 and time.time() < deadline:  # start together
    time.sleep(0.005)
sid = store.add_submission(board=board, display_name=sys.argv[3], agent="naive", config={{}}, config_hash="c",
                           source_hash="d", source_files={{}})
for seed in range(40):
    store.add_run(sid, board, make_result("s1", seed, 0.5))
store.finish_submission(sid, "complete")
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    Store(path).close()
    script = CONCURRENT_WRITER.format(
        root=str(Path(__file__).resolve().parent.parent), tests=str(Path(__file__).resolve().parent)
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(barrier), f"writer-{i}"], stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with Store(path) as store:
        subs = store.submissions("t")
        assert sorted(s.display_name for s in subs) == ["writer-0", "writer-1"]
        assert [len(store.runs(s.id)) for s in subs] == [40, 40]
        assert store.count("metrics") == 80 * 5  # the five defined on a class-IL run


def test_secrets_in_the_environment_never_reach_the_store(tmp_path, monkeypatch):
    key = "fake-key-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", key)
    board = make_board()
    with Store(tmp_path / "s.sqlite") as store:
        sid = store.add_submission(
            board=board,
            display_name=f"leaky {key}",
            agent="naive",
            config={"token": key},
            config_hash="c",
            source_hash="d",
            source_files={},
        )
        store.add_run(sid, board, make_result("s1", 0))
        assert store.submission(sid).display_name == "leaky [redacted]"
        store.finish_submission(sid, "complete")
        table = board_table(board, store)
    for fmt in export.FORMATS:
        assert key not in export.render(table, fmt)
    for f in tmp_path.iterdir():
        assert key.encode() not in f.read_bytes(), f


# --- exports ----------------------------------------------------------------------
EVIL = "<script>alert('x')</script> | =HYPERLINK(\"http://e\")"


@pytest.fixture
def evil_table():
    board = make_board()
    with Store(":memory:") as store:
        submit(store, board, EVIL, [0.6, 0.7, 0.8])
        submit(store, board, "plain", [0.9, 0.9, 0.9])
        submit(store, board, "=cmd|' /C calc'!A0", [0.1, 0.1, 0.1])
        yield board_table(board, store)


def test_html_escapes_names_and_is_self_contained(evil_table):
    page = export.to_html(evil_table)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own sorting script
    assert not re.search(r"\b(src|href)\s*=", page) and "<link" not in page  # nothing external


def test_markdown_csv_and_json_exports(evil_table):
    md = export.to_markdown(evil_table)
    assert "&lt;script&gt;" in md and "<script>" not in md and "\\|" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 4 and all(ln.count(" | ") == lines[0].count(" | ") for ln in lines)
    rows = list(csv.DictReader(io.StringIO(export.to_csv(evil_table))))
    assert [r["name"] for r in rows] == ["plain", EVIL, "'=cmd|' /C calc'!A0"]  # formula guard; '<' is harmless
    assert float(rows[1]["acc_mean"]) == pytest.approx(0.7) and float(rows[1]["acc_low"]) < 0.7
    data = json.loads(export.to_json(evil_table))
    assert [r["rank"] for r in data["rows"]] == [1, 2, 3] and data["rows"][1]["name"] == EVIL
    assert data["streams"] == [{"name": "s1", "fingerprint": FP1}, {"name": "s2", "fingerprint": FP2}]


def test_every_view_shows_state_bytes_and_na_where_unknown():
    """The mean of costs["state_bytes"] over an entry's runs; n/a when any run lacks it (unknown is not 0)."""
    board = make_board()
    with Store(":memory:") as store:
        for name, counted in (("counted", (1000, 3000)), ("partly", (1000, None))):
            sid = store.add_submission(
                board=board,
                display_name=name,
                agent="naive",
                config={},
                config_hash="c" * 64,
                source_hash="d" * 64,
                source_files={},
            )
            for seed, acc in zip(board.seeds, (0.9, 0.8, 0.7)):
                for stream, state in zip(("s1", "s2"), counted):
                    result = make_result(stream, seed, acc if name == "counted" else acc - 0.5)
                    if state is not None:
                        result.costs.update(state_bytes=state + seed, state_bytes_parts={"replay_items": state + seed})
                    store.add_run(sid, board, result)
            store.finish_submission(sid, "complete")
        table = board_table(board, store)
    expected = 2000 + float(np.mean(board.seeds))
    assert [r.state_bytes for r in table.rows] == [pytest.approx(expected), None]
    md_rows = [ln for ln in export.to_markdown(table).splitlines() if ln.startswith("| ")]
    assert "State bytes" in md_rows[0] and f"{expected / 1000:.3g} kB" in md_rows[1] and "n/a" in md_rows[2]
    rows = list(csv.DictReader(io.StringIO(export.to_csv(table))))
    assert float(rows[0]["state_bytes_mean"]) == pytest.approx(expected) and rows[1]["state_bytes_mean"] == ""
    assert [r["state_bytes"] for r in json.loads(export.to_json(table))["rows"]] == [pytest.approx(expected), None]
    assert "state bytes" in export.to_html(table) and 'title="unknown">n/a' in export.to_html(table)
    columns, data = export.rows_for_wandb(table)
    assert [row[columns.index("state_bytes_mean")] for row in data] == [pytest.approx(expected), None]
    out = io.StringIO()
    export.print_table(table, file=out)
    assert "state bytes" in out.getvalue() and "kB" in out.getvalue()


def test_html_sorts_on_header_click_in_headless_chromium(evil_table, tmp_path):
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    # Ids by rank: plain #2, evil #1, formula #3. Click "acc" (ascending), "acc" again
    # (descending), then "name" (ascending), recording the row order after each click.
    record = 'Array.from(document.querySelectorAll("tbody tr")).map(r => r.cells[4].dataset.sort).join(",")'
    clicks = (
        '<script>var h = document.querySelectorAll("table.board th"), seen = [];'
        f"h[5].click(); seen.push({record}); h[5].click(); seen.push({record});"
        f'h[1].click(); seen.push({record}); document.body.dataset.seen = seen.join(";");</script></body>'
    )
    html_file = tmp_path / "board.html"
    html_file.write_text(export.to_html(evil_table).replace("</body>", clicks))
    out = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            html_file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = re.search(r'data-seen="([^"]*)"', out.stdout)
    assert seen is not None, out.stdout[:2000]
    assert seen.group(1).split(";") == ["3,1,2", "2,1,3", "1,3,2"]
    assert 'aria-sort="ascending"' in out.stdout
