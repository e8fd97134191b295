"""A sweep's orchestration: the cohort sweeper's grouping, the claims protocol's stages, the sweep's
status and live progress (read from the results' files)."""
