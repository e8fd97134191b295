"""Regularisers ("arms"): each is one module here and one conf/reg/<name>.yaml with a `_target_`.

See `benchmark.arms.base` for what an arm provides, docs/arms.md for the built-in ones and
docs/extending.md for adding one from outside the package.
"""

from benchmark.arms.base import Arm, ArmVariant, Site, build_arm, load_arm, options, require_arm

__all__ = ["Arm", "ArmVariant", "Site", "build_arm", "load_arm", "options", "require_arm"]
