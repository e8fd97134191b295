"""A sweep as a whole, above its single runs: what happened to its jobs (no torch, no pandas)."""
