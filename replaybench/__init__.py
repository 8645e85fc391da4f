"""replaybench: a continual-learning and replay benchmark suite."""

__version__ = "0.1.0"
