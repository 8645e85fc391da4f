"""leaderboards: see docs/architecture.md."""
