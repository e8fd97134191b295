"""Shared test set-up: fixtures over tests/helpers.py. torch is not imported here: the analysis tests
run without it (as the analysis tools do)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest

import helpers


@pytest.fixture(autouse=True)
def _one_torch_thread(request):
    """In-process tests that use torch run it on one thread, restored afterwards.

    Their tensors are tiny, where a second OpenMP thread only adds contention on a shared
    2-core runner (10-20x slower steps seen here), and `make test` runs a pytest-xdist worker
    on every core (the CLIs the tests start take `threads=1` too); code under test may also change the
    thread count (a job sets its own). The step-time benchmarks under tests/bench choose
    their threads themselves. A test whose session never imported torch is left alone.
    """
    torch = sys.modules.get("torch")
    if torch is None or request.node.path.parent.name == "bench":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def float64():
    """torch's default dtype float64 for the test (exact comparisons of fast paths), restored afterwards."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """This test's results folder (not created: the code under test makes it)."""
    return tmp_path / "results"


@pytest.fixture
def compose(results_dir: Path) -> Callable[..., Any]:
    """`compose(*overrides, plugin=False, hydra_config=False)`: the composed run config, writing under
    `results_dir` (an override may name another folder)."""

    def _compose(*overrides: str, **kw: Any) -> Any:
        return helpers.compose(f"results_dir={results_dir}", *overrides, **kw)

    return _compose


@pytest.fixture
def tiny(compose: Callable[..., Any]) -> Callable[..., Any]:
    """`tiny(*overrides)`: the tiny grid point (helpers.TINY) composed, with the overrides on top."""
    return lambda *overrides, **kw: compose(*helpers.TINY, *overrides, **kw)


@pytest.fixture
def cli() -> Callable[..., Any]:
    """`cli(module, *args, cwd=, timeout=, check=)`: `python -m module` in a subprocess (helpers.python_m)."""
    return helpers.python_m


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A folder holding a tiny MNIST-format data set (tests/mnist_fixture.py), for tasks with a data_dir."""
    from mnist_fixture import write_mnist

    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def mnist_full_dir(tmp_path_factory):
    """MNIST-format files at the real sizes (60000 / 10000, all zeros, sparse): for split-size checks."""
    from mnist_fixture import write_full_size_headers

    return write_full_size_headers(tmp_path_factory.mktemp("mnist-full"))
