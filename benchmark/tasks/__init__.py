"""Tasks with a sequence-length knob: adding, copy, digits, smnist, pmnist, ucr, ptb, chars (and user tasks).

The entry point builds a task with `hydra.utils.instantiate(cfg.task)`; library code and
tests may use `get_task(name, **kwargs)` instead.
"""

from __future__ import annotations

from typing import Any

from benchmark.core.config import ConfigError
from benchmark.tasks.adding import AddingTask
from benchmark.tasks.base import Task
from benchmark.tasks.chars import CharWindows
from benchmark.tasks.copy import CopyTask
from benchmark.tasks.digits import DigitsTask
from benchmark.tasks.mnist import PermutedMNIST, SequentialMNIST
from benchmark.tasks.ptb import PennTreebank
from benchmark.tasks.ucr import UCRTask

TASKS: dict[str, type[Task]] = {
    "adding": AddingTask,
    "copy": CopyTask,
    "digits": DigitsTask,
    "smnist": SequentialMNIST,
    "pmnist": PermutedMNIST,
    "ucr": UCRTask,
    "ptb": PennTreebank,
    "chars": CharWindows,
}


def get_task(name: str, **kwargs: Any) -> Task:
    """Build a built-in task by name, with an error that lists the choices."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ConfigError("task.name", name, "one of: " + ", ".join(sorted(TASKS))) from None
    return cls(**kwargs)


def check_task(obj: object, key: str = "task._target_") -> Task:
    """Make sure an object built from config is a usable task."""
    if not isinstance(obj, Task):
        raise ConfigError(key, type(obj).__name__, "a subclass of benchmark.tasks.base.Task")
    return obj


__all__ = [
    "TASKS",
    "Task",
    "AddingTask",
    "CopyTask",
    "DigitsTask",
    "PennTreebank",
    "PermutedMNIST",
    "SequentialMNIST",
    "UCRTask",
    "get_task",
    "check_task",
]
