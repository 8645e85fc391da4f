"""replaybench: a continual-learning and replay benchmark suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replaybench.analysis import load_results

__version__ = "0.1.0"
__all__ = ["__version__", "load_results"]


def __getattr__(name: str) -> Any:
    # load_results needs pandas: imported on first use, so `import replaybench` stays fast
    if name == "load_results":
        from replaybench.analysis import load_results

        return load_results
    raise AttributeError(f"module 'replaybench' has no attribute {name!r}")
