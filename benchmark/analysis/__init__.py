"""Analysis of a sweep's results folder, without torch: progress and status of the grid (and, with the verdicts, aggregation and the report)."""
