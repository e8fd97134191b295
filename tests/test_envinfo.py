"""GPU clocks come from the GPU the job uses: matched by UUID, not by torch's index (no GPU needed here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

import benchmark as bm  # noqa: F401  (pytest-benchmark owns the name `benchmark`)
from benchmark.job import envinfo

# Two GPUs as nvidia-smi lists them (all GPUs of the node, its own order and index).
SMI = (
    "GPU-11111111-aaaa-bbbb-cccc-000000000000, NVIDIA H100 80GB HBM3, 1980 MHz, 2619 MHz, 1980 MHz, 2619 MHz, "
    "700.00 W, 550.54\n"
    "GPU-22222222-aaaa-bbbb-cccc-000000000000, NVIDIA H100 80GB HBM3, 345 MHz, 2619 MHz, 1980 MHz, 2619 MHz, "
    "500.00 W, 550.54\n"
)


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An `nvidia-smi` on PATH that prints `text` (and records its arguments) and exits `rc`."""

    def install(text: str, rc: int = 0) -> Path:
        (tmp_path / "out.txt").write_text(text)
        script = tmp_path / "nvidia-smi"
        script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args.txt"\ncat "{tmp_path}/out.txt"\nexit {rc}\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        return tmp_path / "args.txt"

    return install


def use_uuid(monkeypatch: pytest.MonkeyPatch, uuid: str) -> None:
    monkeypatch.setattr(envinfo, "device_uuid", lambda device: uuid)


def test_clocks_of_the_gpu_with_the_jobs_uuid_not_torchs_index(fake_smi, monkeypatch):
    # Under CUDA_VISIBLE_DEVICES=1 torch calls the second GPU cuda:0; nvidia-smi still lists it second.
    args = fake_smi(SMI)
    use_uuid(monkeypatch, "22222222-aaaa-bbbb-cccc-000000000000")
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert err is None
    assert clocks["uuid"] == "GPU-22222222-aaaa-bbbb-cccc-000000000000"
    assert clocks["clocks.sm"] == "345 MHz" and clocks["power.limit"] == "500.00 W"
    assert set(clocks) == {"uuid", *envinfo.NVIDIA_SMI_FIELDS}
    assert "--id" not in args.read_text() and "--query-gpu=uuid," in args.read_text()


def test_no_matching_uuid_is_recorded_with_the_reason(fake_smi, monkeypatch):
    fake_smi(SMI)
    use_uuid(monkeypatch, "33333333-aaaa-bbbb-cccc-000000000000")
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert clocks is None
    assert "UUID 33333333" in err and "GPU-11111111" in err and "GPU-22222222" in err


def test_mig_uuids_and_case_match(fake_smi, monkeypatch):
    fake_smi("MIG-ABCDEF01-aaaa-bbbb-cccc-000000000000, NVIDIA H100, 1, 2, 3, 4, 5 W, 6\n")
    use_uuid(monkeypatch, "MIG-abcdef01-aaaa-bbbb-cccc-000000000000")
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert err is None and clocks["driver_version"] == "6"


def test_failures_of_nvidia_smi_are_reasons_not_exceptions(fake_smi, monkeypatch):
    use_uuid(monkeypatch, "22222222-aaaa-bbbb-cccc-000000000000")
    fake_smi("NVIDIA-SMI has failed\n", rc=9)
    assert envinfo.gpu_clocks(torch.device("cuda", 0)) == (None, "nvidia-smi exited 9: NVIDIA-SMI has failed")
    fake_smi("GPU-22222222-aaaa-bbbb-cccc-000000000000, only, three\n")
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert clocks is None and err.startswith("unexpected nvidia-smi output")
    monkeypatch.setenv("PATH", "/nonexistent")
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert clocks is None and "nvidia-smi failed: FileNotFoundError" in err
    assert envinfo.gpu_clocks(torch.device("cpu")) == (None, "not a CUDA device")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_gpu_clocks_match_the_device_uuid():  # pragma: no cover - GPU machines only
    clocks, err = envinfo.gpu_clocks(torch.device("cuda", 0))
    assert err is None, err
    assert envinfo.device_uuid(torch.device("cuda", 0)).lower() in clocks["uuid"].lower()
