"""Shared test set-up."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread(request):
    """In-process tests run torch on one thread, restored afterwards.

    Their tensors are tiny, where a second OpenMP thread only adds contention on a shared
    2-core runner (10-20x slower steps seen here); code under test may also change the
    thread count (a job sets its own). The step-time benchmarks under tests/bench choose
    their threads themselves.
    """
    n = torch.get_num_threads()
    if request.node.path.parent.name != "bench":
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
