"""memories: see docs/architecture.md."""
