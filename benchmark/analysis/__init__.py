"""The analysis of a sweep, importable without torch: the run record, aggregation, statistics,
verdicts and claims, figures and the HTML report (rebuild a report on a laptop or a login node)."""
