"""Batched clock-based spiking simulator with STDP (see docs/architecture.md)."""
