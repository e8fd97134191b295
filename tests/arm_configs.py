"""Arms for tests, built the way a user asks for them: `reg=<name> reg.<block>.<key>=<value>`."""

from __future__ import annotations

from typing import Any, Optional

from benchmark.arms import Arm, load_arm
from benchmark.arms.base import package_arms


def arm(
    name: str = "none",
    bn: Optional[str] = None,
    drop: Optional[str] = None,
    p: Optional[float] = None,
    input_p: Optional[float] = None,
    **bn_kw: Any,
) -> Arm:
    """conf/reg/<name>.yaml with the BN placement / BN settings and the dropout placement / p given.

    Settings of a block the arm does not read are left out (as the old tests' unused fields were ignored).
    """
    blocks = package_arms()[name].blocks
    over = []
    if "bn" in blocks:
        over += [f"bn.placement={bn}"] if bn else []
        over += [f"bn.{k}={'null' if v is None else v}" for k, v in bn_kw.items()]
    if "dropout" in blocks:
        over += ([f"dropout.placement={drop}"] if drop else []) + ([f"dropout.p={p}"] if p is not None else [])
        over += [f"dropout.input_p={input_p}"] if input_p is not None else []
    return load_arm(name, *over)
