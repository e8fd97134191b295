"""Where a number was measured: device, library versions, threads, git revision, host.

Timings mean nothing without this (cuDNN picks kernels by GPU, dtype and size; CPU times
depend on the thread count), so every metrics.json carries it.
"""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Optional

import torch

from benchmark.training import allocator
from benchmark.training.precision import cpu_bf16_fallbacks

REPO = Path(__file__).resolve().parents[2]


def git_rev(repo: Path = REPO) -> Optional[str]:
    """HEAD's commit (with '-dirty' when tracked files changed), or None outside a checkout."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


NVIDIA_SMI_FIELDS = (
    "name",
    "clocks.sm",
    "clocks.mem",
    "clocks.max.sm",
    "clocks.max.mem",
    "power.limit",
    "driver_version",
)


def device_uuid(device: torch.device) -> str:
    """The CUDA device's UUID as torch reports it (no `GPU-` prefix)."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    return str(torch.cuda.get_device_properties(idx).uuid)


def _uuid_key(uuid: str) -> str:
    """nvidia-smi writes `GPU-<uuid>` (or `MIG-<uuid>`), torch the bare UUID: compare the bare form."""
    u = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix) :]
    return u


def gpu_clocks(device: torch.device) -> tuple[Optional[dict[str, str]], Optional[str]]:
    """(nvidia-smi's clocks, power limit and driver of `device`, None) or (None, why not).

    The GPU is found by UUID: torch's device index counts only the GPUs in
    CUDA_VISIBLE_DEVICES (and may order them differently), nvidia-smi's index counts all.
    Clocks explain run-to-run differences on one GPU model (boost, power capping); the
    query is best effort, and a failure is recorded with its reason, never hidden.
    """
    if device.type != "cuda":
        return None, "not a CUDA device"
    try:
        uuid = device_uuid(device)
    except (RuntimeError, AssertionError) as e:
        return None, f"cannot read the device's UUID: {type(e).__name__}: {e}"
    cmd = ["nvidia-smi", "--query-gpu=uuid," + ",".join(NVIDIA_SMI_FIELDS), "--format=csv,noheader"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{cmd[0]} failed: {type(e).__name__}: {e}"
    if out.returncode != 0:
        return None, f"nvidia-smi exited {out.returncode}: {(out.stderr or out.stdout).strip()[:200]}"
    seen = []
    for line in out.stdout.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != 1 + len(NVIDIA_SMI_FIELDS):
            return None, f"unexpected nvidia-smi output: {line.strip()[:200]!r}"
        if _uuid_key(values[0]) == _uuid_key(uuid):
            return {"uuid": values[0], **dict(zip(NVIDIA_SMI_FIELDS, values[1:]))}, None
        seen.append(values[0])
    return None, f"no GPU in nvidia-smi's list has this device's UUID {uuid} (listed: {', '.join(seen) or 'none'})"


def precision_flags() -> dict[str, Any]:
    """The settings that change what an fp32 matmul / RNN kernel is on a GPU."""
    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_enabled": bool(torch.backends.cudnn.enabled),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def collect(device: torch.device, precision: str, start_time: str) -> dict[str, Any]:
    """The `env` block of metrics.json (wall_s is added by the caller at the end)."""
    cuda = device.type == "cuda"
    clocks, clocks_error = gpu_clocks(device)
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(),
        "malloc_keep_freed": allocator.applied(),
        "git_rev": git_rev(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "start_time": start_time,
        "tf32": bool(cuda and torch.backends.cuda.matmul.allow_tf32),
        "precision": precision,
        "autocast_dtype": "bfloat16" if precision == "bf16" else None,
        # fused CPU kernels that ran in float32 under bf16 autocast (no bf16 kernel on this CPU)
        "cpu_bf16_fp32_fallback": cpu_bf16_fallbacks() if precision == "bf16" and not cuda else None,
        **precision_flags(),
        "gpu_clocks": clocks,
        "gpu_clocks_error": clocks_error,
    }
