"""Registers the built-in streams (loaded lazily by replaybench.registry)."""
