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

REPO = Path(__file__).resolve().parent.parent


def git_rev(repo: Path = REPO) -> Optional[str]:
    """HEAD's commit (with '-dirty' when tracked files changed), or None outside a checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def collect(device: torch.device, precision: str, start_time: str) -> dict[str, Any]:
    """The `env` block of metrics.json (wall_s is added by the caller at the end)."""
    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(),
        "git_rev": git_rev(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "start_time": start_time,
        "tf32": bool(cuda and torch.backends.cuda.matmul.allow_tf32),
        "precision": precision,
    }
