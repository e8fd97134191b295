"""Options and machine info for the step-time benchmarks (`make bench`, `make bench-check`).

The benchmark files are named `bench_*.py`, which pytest's default `test_*.py` pattern does
not collect, so `make test` never runs them; the Makefile names the file explicitly.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.training import allocator


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("rnn-bench", "rnn-ablation-bench step-time benchmarks")
    g.addoption("--bench-seq-lens", default="50,200", help="comma-separated T values (default 50,200)")
    g.addoption("--bench-rounds", type=int, default=20, help="timed rounds per variant (default 20)")
    g.addoption("--bench-warmup", type=int, default=3, help="untimed warm-up rounds per variant (default 3)")
    g.addoption("--bench-threads", type=int, default=2, help="torch.set_num_threads for the session (default 2)")
    g.addoption(
        "--bench-slowdown",
        default="",
        help="deliberately slow variants, to prove the check catches it: "
        "VARIANT:FACTOR[,VARIANT:FACTOR]; VARIANT with or without -T<seq_len>, "
        "e.g. lstm-custom-none:1.5",
    )


def parse_slowdown(spec: str) -> dict[str, float]:
    """'lstm-custom-none:1.5,gru-native-none-T50:2' -> {variant: factor}; factors >= 1."""
    out: dict[str, float] = {}
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, factor = part.rpartition(":")
        try:
            f = float(factor)
        except ValueError:
            f = 0.0
        if not sep or not name or f < 1.0:
            raise pytest.UsageError(f"--bench-slowdown: expected VARIANT:FACTOR with FACTOR >= 1, got {part!r}")
        out[name] = f
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A slowdown that names no collected variant is a typo, not a pass: fail loudly."""
    wanted = parse_slowdown(config.getoption("bench_slowdown", default="") or "")
    if not wanted:
        return
    names = set()
    for item in items:
        v = getattr(getattr(item, "callspec", None), "params", {}).get("variant")
        if v is not None:
            names |= {v.id, v.base_id}
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise pytest.UsageError(
            f"--bench-slowdown names no collected variant: {', '.join(unknown)}; "
            f"collected e.g. {', '.join(sorted(names)[:4])}"
        )


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request: pytest.FixtureRequest):
    """Fixed intra-op thread count for the whole session (restored afterwards).

    Also the allocator setting `benchmark.run` uses, so steps are timed as runs make them.
    """
    allocator.keep_freed_memory()
    before = torch.get_num_threads()
    torch.set_num_threads(request.config.getoption("bench_threads"))
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bench_slowdown(request: pytest.FixtureRequest) -> dict[str, float]:
    """{variant or base variant: factor} from --bench-slowdown (empty normally)."""
    return parse_slowdown(request.config.getoption("bench_slowdown"))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """pytest-benchmark's machine_info has no torch/GPU fields; ratios depend on them."""
    cuda = torch.cuda.is_available()
    machine_info.update(
        torch=torch.__version__,
        torch_threads=config.getoption("bench_threads", default=None),
        mkldnn=torch.backends.mkldnn.is_available(),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        gpu=torch.cuda.get_device_name(0) if cuda else None,
        bench_device="cpu",
        malloc_keep_freed=allocator.applied(),
    )
