"""docs/reproductions.md: every command in its table names a real script and flags its parser accepts.

The table's last column holds the commands that make "ours". Each one is run
with `--help` (after its subcommand, if any) in a subprocess and every flag it
uses must appear in that help, so renaming a flag or a script breaks this test.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reproductions.md"
COLUMNS = ["paper", "claim (paper's number)", "ours", "protocol differences", "status", "command"]
STATUSES = ("reproduced", "partly", "not reproduced", "not attempted")
COMMAND = re.compile(r"`((?:python|\.venv/bin/python) benchmarks/[^`]+|replaybench [^`]+)`")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_rows() -> list[list[str]]:
    """The rows of the page's table, header and separator excluded."""
    lines = [line for line in PAGE.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert _cells(lines[0]) == COLUMNS, "the table's header changed"
    rows = [_cells(line) for line in lines[2:]]
    for row in rows:
        assert len(row) == len(COLUMNS), f"row with {len(row)} cells (a stray '|'?): {row[0]}"
    return rows


def commands() -> list[str]:
    return [cmd for row in table_rows() for cmd in COMMAND.findall(row[-1])]


def test_every_row_has_a_status_and_a_command_or_a_need() -> None:
    rows = table_rows()
    assert len(rows) >= 10
    for row in rows:
        status, command = row[4], row[5]
        assert status.startswith(STATUSES), status
        if status.startswith("not attempted"):
            assert "needs" in status, f"say what it needs: {row[0]}"
        else:
            assert COMMAND.search(command), f"no command for a measured row: {row[0]}"


def _split(command: str) -> tuple[list[str], list[str]]:
    """(the words before the first flag, the flags), `--x=y` counted as `--x`."""
    words = shlex.split(command)
    first_flag = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    flags = [w.split("=", 1)[0] for w in words[first_flag:] if re.match(r"-{1,2}[A-Za-z]", w)]
    return words[:first_flag], flags


@functools.cache
def _help(prefix: tuple[str, ...]) -> str:
    if prefix[0] == "replaybench":
        exe = shutil.which("replaybench") or str(Path(sys.executable).with_name("replaybench"))
        argv = [exe, *prefix[1:]]
    else:
        argv = [sys.executable, *prefix[1:]]
    done = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(prefix)} --help failed: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("command", commands())
def test_command_script_and_flags_exist(command: str) -> None:
    prefix, flags = _split(command)
    if prefix[0] != "replaybench":
        script = ROOT / prefix[1]
        assert script.is_file(), f"{prefix[1]} does not exist"
    text = _help(tuple(prefix))
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{flag} not accepted by {' '.join(prefix)}"


def test_the_parser_catches_a_renamed_flag() -> None:
    _, flags = _split("python benchmarks/snn_accuracy.py --batch-size 16 --no-such-flag")
    assert flags == ["--batch-size", "--no-such-flag"]
    text = _help(("python", "benchmarks/snn_accuracy.py"))
    assert "--batch-size" in text and "--no-such-flag" not in text
