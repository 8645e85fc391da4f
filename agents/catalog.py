"""Registers the built-in agents (loaded lazily by replaybench.registry)."""
