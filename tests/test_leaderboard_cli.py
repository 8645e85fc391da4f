"""The real commands on a tiny board: one seed of naive on split-digits, 1 epoch."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from replaybench.cli import main
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.store import Store
from replaybench.leaderboards.wandb_sink import results_artifact_name
from replaybench.provenance import config_hash
from replaybench.results import result_from_json

ROOT = Path(__file__).resolve().parent.parent
TINY = """\
name = "tiny"
version = "1"
seeds = [0]
metrics = ["acc", "forgetting_max", "bwt"]
primary_metric = "acc"
direction = "higher"

[streams.split-digits]
fingerprint = "{fingerprint}"

[budget]
epochs = 1
"""
TINY_PRESETS = {"format": 1, "board": "tiny", "board_version": "1", "agents": {"naive": {"options": {"hidden": [32]}}}}


@pytest.fixture(autouse=True)
def no_wandb_by_default(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # submit logs to W&B when WANDB_MODE is set


@pytest.fixture(scope="module")
def tiny_board(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("boards") / "tiny.toml"
    path.write_text(TINY.format(fingerprint=load_board("quick").stream("split-digits").fingerprint))
    (path.parent / "tiny.presets.json").write_text(json.dumps(TINY_PRESETS))  # naive's preset: a small net
    return path


@pytest.fixture
def paths(tmp_path, tiny_board):
    return {"board": str(tiny_board), "store": str(tmp_path / "lb.sqlite"), "out": str(tmp_path / "out")}


def submit(paths, *extra):
    return main(
        [
            "submit",
            "naive",
            "--board",
            paths["board"],
            "--store",
            paths["store"],
            "--out",
            paths["out"],
            "--no-plots",
            *extra,
        ]
    )


def test_submit_records_every_run_prints_the_board_and_verifies(paths, capsys):
    assert submit(paths, "--name", "../../escape me") == 0
    out = capsys.readouterr().out
    assert "→ 1" in out and "escape me" in out and "#1" in out
    with Store(paths["store"]) as store:
        (sub,) = store.submissions("tiny")
        (run,) = store.runs(sub.id)
        assert sub.status == "complete" and not sub.verified
        assert sub.config["epochs"] == 1 and sub.config["hidden"] == [32]
        assert sub.config_hash == config_hash(sub.config)
        assert "replaybench/agents/naive.py" in sub.source_files and len(sub.source_hash) == 64
        assert run.provenance["stream_fingerprint"] == load_board("quick").stream("split-digits").fingerprint
        assert run.provenance["config"] == sub.config and len(run.R) == 5
    written = list(Path(paths["out"]).rglob("*.json"))
    assert len(written) == 1 and Path(paths["out"]).resolve() in written[0].resolve().parents
    assert ".." not in written[0].relative_to(paths["out"]).parts

    assert main(["verify", "1", "--board", paths["board"], "--store", paths["store"]]) == 0
    assert "verified" in capsys.readouterr().out
    with Store(paths["store"]) as store:
        assert store.submission(1).verified
    assert main(["leaderboard", "show", paths["board"], "--store", paths["store"]]) == 0
    assert "✓" in capsys.readouterr().out

    db = sqlite3.connect(paths["store"])  # tamper with the stored R: the re-run no longer matches
    db.execute("UPDATE runs SET r_json = ?", (json.dumps([[0.0] * 5] * 5),))
    db.commit()
    db.close()
    assert main(["verify", "1", "--board", paths["board"], "--store", paths["store"]]) == 2
    assert "was not reproduced" in capsys.readouterr().err
    with Store(paths["store"]) as store:
        assert not store.submission(1).verified and store.count("verifications") == 2


def test_export_writes_sanitised_file_names(paths, tmp_path, capsys):
    assert (
        main(
            [
                "leaderboard",
                "export",
                paths["board"],
                "--store",
                paths["store"],
                "--format",
                "html",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "leaderboard-tiny.html").is_file()
    assert main(["leaderboard", "export", paths["board"], "--store", paths["store"], "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["board"] == "tiny"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown agent", "Unknown agent 'naiv'"),
        ("unknown board", "Unknown board 'nope'"),
        ("stale fingerprint", "fingerprint"),
        ("unpinned", "leaderboard pin tiny"),
        ("unknown option", "Unknown option 'epoch'"),
        ("bad option value", "'lr' parameter"),
        ("config sets seeds", "fixes its streams and seeds"),
        ("missing config", "Config file not found"),
        ("bad display name", "display name"),
        ("bad wandb mode", "W&B mode"),
        ("file agent missing", "No such file"),
    ],
)
def test_bad_submissions_fail_before_any_work(paths, tmp_path, capsys, case, message):
    board = paths["board"]
    extra: list[str] = []
    agent = "naive"
    if case == "unknown agent":
        agent = "naiv"
    elif case == "unknown board":
        board = "nope"
    elif case in ("stale fingerprint", "unpinned"):
        fp = "0" * 64 if case == "stale fingerprint" else ""
        board = write(tmp_path, "b.toml", TINY.format(fingerprint=fp))
    elif case == "unknown option":
        extra = ["--config", write(tmp_path, "c.toml", "[agent]\nepoch = 2\n")]
    elif case == "bad option value":
        extra = ["--config", write(tmp_path, "c.toml", "[agents.naive]\nlr = -1.0\n")]
    elif case == "config sets seeds":
        extra = ["--config", write(tmp_path, "c.toml", "seeds = [5]\n")]
    elif case == "missing config":
        extra = ["--config", str(tmp_path / "absent.toml")]
    elif case == "bad display name":
        extra = ["--name", "two\nlines"]
    elif case == "bad wandb mode":
        extra = ["--wandb=sometimes"]
    elif case == "file agent missing":
        agent = str(tmp_path / "agent.py") + ":Agent"
    code = main(["submit", agent, "--board", board, "--store", paths["store"], "--out", paths["out"], *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not Path(paths["out"]).exists()
    if Path(paths["store"]).exists():
        with Store(paths["store"]) as store:
            assert store.count("runs") == 0


def test_bad_verify_and_show_inputs(paths, capsys):
    assert main(["verify", "42", "--store", paths["store"]]) == 2
    assert "No submission 42" in capsys.readouterr().err
    assert main(["leaderboard", "show", "../../etc/passwd", "--store", paths["store"]]) == 2
    assert "Unknown board" in capsys.readouterr().err


def test_a_file_agent_with_a_secret_in_the_environment(paths, tmp_path, monkeypatch, capsys):
    key = "fake-wandb-key-1234567890abcdef1234567890"
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wb" / var.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    agent_file = tmp_path / "my_agent.py"
    agent_file.write_text("from replaybench.agents.naive import NaiveAgent\n\n\nclass MyAgent(NaiveAgent):\n    pass\n")
    assert (
        main(
            [
                "submit",
                f"{agent_file}:MyAgent",
                "--board",
                paths["board"],
                "--store",
                paths["store"],
                "--out",
                paths["out"],
                "--name",
                f"mine {key}",
                "--wandb",
                "offline",
            ]
        )
        == 0
    )
    for fmt in ("md", "html", "csv", "json"):
        assert (
            main(
                [
                    "leaderboard",
                    "export",
                    paths["board"],
                    "--store",
                    paths["store"],
                    "--format",
                    fmt,
                    "--out",
                    str(tmp_path / f"board.{fmt}"),
                ]
            )
            == 0
        )
    # offline by flag: with a key set, the mode rule would otherwise choose online
    assert main(["leaderboard", "publish", paths["board"], "--store", paths["store"], "--mode", "offline"]) == 0
    captured = capsys.readouterr()
    import wandb

    wandb.teardown()
    assert key not in captured.out + captured.err
    with Store(paths["store"]) as store:
        (sub,) = store.submissions("tiny")
        assert sub.display_name == "mine [redacted]"
        # the file by its name (not its path, which holds no secret then), and the replaybench modules it imports
        assert {"my_agent.py", "replaybench/agents/naive.py"} <= set(sub.source_files)
        assert all(k == "my_agent.py" or k.startswith("replaybench/") for k in sub.source_files)
        (run,) = store.runs(sub.id)
        assert run.wandb_run and Path(run.wandb_run).name.startswith("offline-run-")
        logged_as = results_artifact_name(result_from_json(json.dumps(run.result)), "submission")
        assert run.wandb_artifact == logged_as  # a long name (a file agent), cut and hashed: no guessing it later
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the run and the board
    (manifest,) = [json.loads(m.read_text()) for r in runs for m in r.glob("files/inputs.json")]
    assert manifest == {"results_artifacts": [run.wandb_artifact]}  # the board links what the store kept
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(files) > 10
    leaks = [f for f in files if key.encode() in f.read_bytes()]
    assert leaks == []


BARRIER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from replaybench.cli import main
barrier = Path(sys.argv[1])
(barrier / sys.argv[2]).touch()
deadline = time.time() + 300
while len(list(barrier.iterdir())) < 2 and time.time() < deadline:  # start together
    time.sleep(0.01)
sys.exit(main(sys.argv[3:]))
"""


def test_two_processes_submitting_at_once_lose_no_row(paths, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = BARRIER.format(root=str(ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                str(barrier),
                f"p{i}",
                "submit",
                "naive",
                "--board",
                paths["board"],
                "--store",
                paths["store"],
                "--out",
                paths["out"],
                "--no-plots",
                "--name",
                f"p{i}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    with Store(paths["store"]) as store:
        subs = store.submissions("tiny")
        assert sorted(s.display_name for s in subs) == ["p0", "p1"]
        assert all(len(store.runs(s.id)) == 1 for s in subs)


def test_builtin_baselines_accept_their_board_options():
    from replaybench.leaderboards.boards import board_names
    from replaybench.leaderboards.presets import board_options
    from replaybench.runner import agent_class_and_config

    for name in board_names():
        board = load_board(name)
        for agent in board.baselines:
            options, _ = board_options(board, agent)
            agent_class_and_config(agent, options)  # raises on an unknown or bad option


def test_pin_fills_registered_streams_and_check_finds_stale_pins(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(TINY.format(fingerprint="") + '\n[streams.not-registered-yet]\nfingerprint = ""\n')
    assert main(["leaderboard", "pin", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not-registered-yet: not registered yet; left unpinned" in out
    board = load_board(str(path))
    assert board.stream("split-digits").fingerprint == load_board("quick").stream("split-digits").fingerprint
    assert board.stream("not-registered-yet").fingerprint == ""
    assert main(["leaderboard", "pin", str(path), "--check"]) == 0
    path.write_text(path.read_text().replace(board.stream("split-digits").fingerprint, "0" * 64))
    assert main(["leaderboard", "pin", str(path), "--check"]) == 2
    assert "stale fingerprints for split-digits" in capsys.readouterr().err
