"""What many test modules share: the repository's paths, one tiny run config, Hydra's compose API and
a runner for the command-line tools. Fixtures wrapping these live in conftest.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PLUGIN = ROOT / "tests" / "plugin_example"  # a user's cells and tasks, outside the package
PLUGIN_SEARCHPATH = f"hydra.searchpath=[file://{PLUGIN / 'conf'}]"
# One grid point that trains in well under a second: every test that runs the real thing starts here.
TINY = [
    "hidden_size=8",
    "train.steps=6",
    "train.batch_size=8",
    "train.eval_interval=3",
    "train.log_interval=2",
    "task.seq_len=8",
    "task.n_train=64",
    "task.n_val=16",
    "task.n_test=16",
    "timing.warmup=1",
    "timing.repeats=2",
    "threads=1",
    "device=cpu",
    "train.progress=false",
]
# Subprocesses find this checkout's package (and the plugin's modules) first. Threads come from the
# configs (`threads=1`), not OMP_NUM_THREADS, which would also change what `nproc` counts in the Makefile.
# A subprocess is a run of its own, not a pytest-xdist worker: a pytest started under a worker's
# PYTEST_XDIST_WORKER would take itself for one (pytest-benchmark then times nothing).
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
ENV["PYTHONPATH"] = os.pathsep.join([str(PLUGIN), str(ROOT)])

# Summary columns (benchmark/analysis/aggregate.py) that measure time, memory or the environment, or name the
# folder: expected to differ between two sweeps of the same grid.
VOLATILE = (
    "_ms",
    "per_s",
    "tokens",
    "wall",
    "env",
    "peak_memory",
    "time",
    "timing",
    "compile",
    "host",
    "path",
    "jobs_beside",
    "load_avg",
)

# What a complete run folder holds (benchmark/job/execute.py): no temp files, nothing else.
RUN_FILES = ["config.yaml", "grid_point.json", "history.csv", "metrics.json"]


def as_terminal_job() -> None:
    """`preexec_fn` of a command a test interrupts as Ctrl-C would: SIGINT handled as in a terminal's job, even
    where the tests themselves run in the background (a non-interactive shell starts those with it ignored,
    and Python keeps an ignored SIGINT ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def names(group: str) -> list[str]:
    """The options of a config group, as Hydra finds them (conf/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


_held = 0  # > 0 inside `hydra_held()`: compose reuses that initialisation


@contextlib.contextmanager
def hydra_held() -> Iterator[None]:
    """Hydra initialised on conf/ once for many `compose` calls (each initialisation rescans the folders)."""
    global _held
    from hydra import initialize_config_dir

    from benchmark.core.config import register_configs

    register_configs()  # the run schema (idempotent)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        _held += 1
        try:
            yield
        finally:
            _held -= 1


def compose(*overrides: str, plugin: bool = False, hydra_config: bool = False) -> Any:
    """`conf/config.yaml` with the overrides, through Hydra's compose API (what `benchmark.run` sees).

    `plugin` adds tests/plugin_example/conf to the search path; `hydra_config` keeps the `hydra`
    node (launcher and sweeper groups), which a plain compose drops.
    """
    from hydra import compose as hydra_compose

    extra = [PLUGIN_SEARCHPATH] if plugin else []
    over = [*extra, *overrides]
    if _held:
        return hydra_compose(config_name="config", overrides=over, return_hydra_config=hydra_config)
    with hydra_held():
        return hydra_compose(config_name="config", overrides=over, return_hydra_config=hydra_config)


def run(
    args: Sequence[str],
    *,
    cwd: Path = ROOT,
    timeout: float = 600,
    check: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """A command (a CLI, `make ...`) in its own process, output captured; `check`: exit 0 or fail with its stderr."""
    p = subprocess.run(list(args), cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    return p


def python_m(module: str, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    """`python -m module args...` with this interpreter (see `run` for the keywords)."""
    return run([sys.executable, "-m", module, *args], **kw)


def sweep_cmd(results: Path, *overrides: str) -> list[str]:
    """A Hydra multirun of `benchmark.run` into `results` (Popen it to interrupt it)."""
    return [sys.executable, "-m", "benchmark.run", "--multirun", f"results_dir={results}", *overrides]


def error_text(e: BaseException) -> str:
    """An exception's message with its causes' (Hydra wraps OmegaConf's validation errors), as the CLI prints it."""
    parts: list[str] = []
    seen: set[int] = set()
    while e is not None and id(e) not in seen:  # a re-raised cause can make the chain a loop
        seen.add(id(e))
        parts.append(str(e))
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return "\n".join(parts)


def complete_runs(sweep_dir: Path) -> list[Path]:
    """Run folders of a sweep whose metrics.json exists (written last, atomically: the point is done)."""
    return sorted(p.parent for p in (sweep_dir / "runs").glob("*/metrics.json"))


def started_runs(sweep_dir: Path) -> list[Path]:
    """Run folders of a sweep, done or not."""
    runs = sweep_dir / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def wait_for_runs(
    sweep_dir: Path, n: int, proc: subprocess.Popen, *, mid_point: bool = False, timeout: float = 300
) -> int:
    """Poll until at least `n` points of the running sweep are complete (and, with `mid_point`, the next
    one has started and is not done: a kill then lands inside a grid point); returns the count."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        done = len(complete_runs(sweep_dir))
        if done >= n and (not mid_point or len(started_runs(sweep_dir)) > done):
            return done
        time.sleep(0.02)
    raise AssertionError(
        f"the sweep {'finished' if proc.poll() is not None else 'stalled'} before {n} point(s) "
        f"were done{' and the next begun' if mid_point else ''}"
    )
