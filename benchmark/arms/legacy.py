"""Run ids of the built-in arms, as they were before arms became plugins.

Until then `reg` was one typed node holding every built-in arm's block at its default (`bn`,
`dropout`, `ln`, `zoneout`) beside `name`, and the run id (benchmark/core/io.py) hashed all of it.
The built-in arms keep that form for the id, so results on disk stay valid: the node is put
back into it (every block typed, defaults filled in, no `_target_`). Arms added since hash
their own node without `_target_` (`Arm.id_node`).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping

from benchmark.arms.base import Arm, typed
from benchmark.arms.blocks import BNConfig, DropoutConfig, LNConfig, ZoneoutConfig


def legacy_blocks() -> dict[str, type]:
    """The blocks the old schema held, in its order."""
    return {"bn": BNConfig, "dropout": DropoutConfig, "ln": LNConfig, "zoneout": ZoneoutConfig}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in d.items()}


def legacy_id_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """{name, bn, dropout, ln, zoneout}: each block typed with its defaults, as the old schema resolved it."""
    blocks = {b: _plain(dataclasses.asdict(typed(cls, node.get(b), f"reg.{b}"))) for b, cls in legacy_blocks().items()}
    return {"name": node["name"], **blocks}


class BuiltinArm(Arm):
    """An arm that existed before arms were plugins: its run ids keep the old form."""

    @classmethod
    def id_node(cls, node: Mapping[str, Any]) -> dict[str, Any]:
        return legacy_id_node(node)
