"""The report every conformance check fills: one line per check, PASS, FAIL or SKIP.

A check is a function that returns its PASS detail, or raises
:class:`CheckFailed` (with the one-line reason) or :class:`CheckSkipped`;
any other exception fails that check alone. :mod:`replaybench.checks` runs
the checks of agents, streams and memories through :meth:`CheckReport.run`.

Example:
    >>> report = CheckReport("memory 'reservoir'")
    >>> report.run("capacity", lambda: "32 of 32 kept")
    True
    >>> report.run("nbytes", lambda: expect(False, "nbytes stays 0 with 8 items stored"))
    False
    >>> print(report.format())
    memory 'reservoir'
    PASS  capacity: 32 of 32 kept
    FAIL  nbytes: nbytes stays 0 with 8 items stored
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from replaybench.errors import one_line


class CheckFailed(Exception):
    """A check's one-line reason for failing."""


class CheckSkipped(Exception):
    """A check that does not apply here, with the reason."""


def expect(condition: bool, reason: str) -> None:
    """Fail the running check with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(reason)


@dataclass
class CheckReport:
    """The outcome of checking one agent, stream or memory.

    Attributes:
        target: What was checked, e.g. ``"agent 'er' on split-digits[tiny]"``.
        results: ``(check, passed, detail)`` in the order run; ``passed`` is
            None for a skipped check.
    """

    target: str
    results: list[tuple[str, bool | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks do not count)."""
        return all(passed is not False for _, passed, _ in self.results)

    @property
    def failures(self) -> list[str]:
        """``"check: reason"`` of every failed check."""
        return [f"{name}: {detail}" for name, passed, detail in self.results if passed is False]

    def record(self, name: str, passed: bool | None, detail: str = "") -> bool:
        """Add a result; returns whether it passed."""
        self.results.append((name, passed, " ".join(detail.split())))  # one line, whatever it was given
        return passed is True

    def run(self, name: str, check: Callable[[], str | None]) -> bool:
        """Run ``check`` as check ``name``: its return value is the PASS detail; any exception fails it."""
        try:
            detail = check()
        except CheckSkipped as skip:
            return self.record(name, None, str(skip))
        except CheckFailed as failure:
            return self.record(name, False, str(failure))
        except Exception as exc:  # a check that raises fails alone, and the others still run
            return self.record(name, False, f"raised {one_line(exc)}")
        return self.record(name, True, detail or "")

    def format(self) -> str:
        """The target, then one ``PASS|FAIL|SKIP  check: detail`` line per check."""
        words = {True: "PASS", False: "FAIL", None: "SKIP"}
        return "\n".join(
            [self.target]
            + [f"{words[passed]}  {name}" + (f": {detail}" if detail else "") for name, passed, detail in self.results]
        )
