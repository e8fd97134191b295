"""The executor of one job of a sweep: prepare its runs (a solo run or a cohort's members), train and
measure them, write each run's folder (`python -m benchmark.run` is its Hydra entry point)."""
