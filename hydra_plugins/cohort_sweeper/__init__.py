"""The cohort sweeper: Hydra's basic sweeper whose jobs train the cohort axes' points together
(benchmark/sweep/cohort_sweep.py). It lives in the `hydra_plugins` namespace package (no
`hydra_plugins/__init__.py`) because Hydra instantiates sweepers only from there."""
