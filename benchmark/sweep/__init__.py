"""Running a sweep as `make sweep` does: one writer per sweep (`lock`), its stages and steps (`driver`),
Hydra's own log lines into the sweep's log file (`hydra_log`). Importable without torch or pandas."""
