"""The examples run as a user runs them (a subprocess, its own output folder) and do what they say.

The docs pages include the examples' sections with ``--8<--`` snippets, so the
last tests hold the pages to the files: every snippet names a file and a
section that exist, and the agent page names every optional agent hook.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.store import Store
from replaybench.protocols import OPTIONAL_HOOKS, DescribedStream, SelfScoringStream, SingleTaskStream

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"


def run_example(name: str, tmp_path: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    environment = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # submit logs to W&B when it is set
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--out", str(out)],
        cwd=tmp_path,  # relative defaults land in tmp_path, never in the repository
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json")) if not p.name.endswith(".failed.json")]


def test_custom_agent_passes_the_check_and_runs(tmp_path):
    out = run_example("custom_agent.py", tmp_path).stdout
    assert "FAIL" not in out
    for check in ("kinds: supervised -> predict()", "hooks: state_bytes", "state_dict: a fresh agent", "determinism"):
        assert f"PASS  {check}" in out
    (result,) = results(tmp_path / "out")
    assert result["spec"]["agent"].endswith("custom_agent.py:NearestClassMean")
    assert result["spec"]["agent_options"] == {"metric": "cosine"}
    assert len(result["R"]) == 5 and result["metrics"]["acc"] > 0.6  # chance is 0.1
    assert result["costs"]["state_bytes"] == 10 * 64 * 8 + 10 * 8  # float64 sums and int64 counts of 10 classes
    found = re.search(r"per_class=20: acc (\d\.\d+), forgetting_max (\d\.\d+)", out)
    assert found and 0.1 < float(found[1]) <= result["metrics"]["acc"] + 0.05


def test_custom_stream_three_ways(tmp_path):
    out = run_example("custom_stream.py", tmp_path).stdout
    assert "FAIL" not in out and "PASS  fingerprint" in out and "PASS  tiny" in out
    (result,) = results(tmp_path / "out")  # the file spec on the command line
    assert result["spec"]["stream"].endswith("custom_stream.py:make_noisy_digits")
    assert result["provenance"]["scenario"] == "domain-il" and len(result["R"]) == 4
    assert "built in Python: noisy-digits-hard" in out
    assert "registered: noisy-digits-hard, same fingerprint as the built stream: True" in out
    levels = re.search(r"accuracy on each noise level after the last: ([\d. ]+)", out)
    assert levels and len(levels[1].split()) == 4


def test_custom_stream_as_an_installed_plugin(tmp_path):
    """The third way for real: a distribution whose ``replaybench.streams`` entry point names the builder."""
    site = tmp_path / "site"
    dist = site / "noisy_digits_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: noisy-digits-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[replaybench.streams]\nnoisy-digits = custom_stream:make_noisy_digits\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLES)])}
    listed = subprocess.run(
        [sys.executable, "-m", "replaybench", "list", "streams"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s*noisy-digits\b", listed.stdout, re.MULTILINE), listed.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "replaybench", "check", "stream", "noisy-digits", "-o", "n_experiences=2"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASS  experiences: 2 supervised experiences" in checked.stdout


def test_custom_board_pins_ranks_and_exports(tmp_path):
    out = run_example("custom_board.py", tmp_path).stdout
    folder = tmp_path / "out"
    board = load_board(str(folder / "digits-mini.toml"))
    assert [s.name for s in board.streams] == ["split-digits", "permuted-digits"]
    assert all(len(s.fingerprint) == 64 for s in board.streams)
    with Store(folder / "lb.sqlite") as store:
        submissions = {s.display_name: s for s in store.submissions("digits-mini")}
        assert set(submissions) == {"naive", "nearest class mean"}
        for sub in submissions.values():
            assert sub.status == "complete"
            assert sorted((r.stream, r.seed) for r in store.runs(sub.id)) == sorted(
                (s, seed) for s in ("split-digits", "permuted-digits") for seed in (0, 1)
            )
    table = (folder / "digits-mini.md").read_text()
    ranked = re.findall(r"^\| (\d) \| ([^|]+) \|", table, re.MULTILINE)
    assert [name.strip() for _, name in ranked] == ["nearest class mean", "naive"]  # NCM barely forgets
    assert "submission 2: nearest class mean (complete), 4 runs" in out


def test_analysis_reads_results_and_draws_the_figures(tmp_path):
    out = run_example("analysis.py", tmp_path).stdout
    assert "4 runs, 24 rows" in out
    acc = {a: float(v) for a, v in re.findall(r"^(\w+): acc (\d\.\d+) ±", out, re.MULTILINE)}
    assert set(acc) == {"naive", "er"} and acc["er"] > acc["naive"] + 0.3  # replay against fine-tuning, class-IL
    figures = tmp_path / "out" / "figures"
    for stem in ("A_k", "average_accuracy", "forgetting", "agent_comparison", "R_heatmaps"):
        assert (figures / f"{stem}.png").stat().st_size > 1000


# --- the docs pages and the examples they include ------------------------------------------------
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$', re.MULTILINE)


def test_every_snippet_names_a_file_and_section_that_exist():
    seen = 0
    for page in DOCS.rglob("*.md"):
        for path, section in SNIPPET.findall(page.read_text()):
            target = ROOT / path
            assert target.is_file(), f"{page.name} includes {path}, which does not exist"
            if section:
                text = target.read_text()
                for edge in ("start", "end"):
                    assert f"# --8<-- [{edge}:{section}]" in text, f"{page.name}: {path} has no {edge}:{section}"
            seen += 1
    assert seen >= 5  # the two "write your own" pages and the changelog


def test_the_pages_name_every_optional_hook():
    stream_protocols = {SelfScoringStream, SingleTaskStream, DescribedStream}
    agent_page, stream_page = (DOCS / "write-an-agent.md").read_text(), (DOCS / "write-a-stream.md").read_text()
    for hook, (protocol, _) in OPTIONAL_HOOKS.items():
        page = stream_page if protocol in stream_protocols else agent_page
        assert f"`{hook}" in page and f"`{protocol.__name__}`" in page, f"the docs page lacks {hook} ({protocol})"
