"""A sweep's orchestration: the cohort sweeper's grouping, the claims protocol's stages, the sweep's
status and live progress (read from the results' files), and `make sweep` itself: its steps (`driver`),
one writer per sweep (`lock`), Hydra's own log lines into the sweep's log file (`hydra_log`),
its history of cluster jobs lost (`history`)."""
