"""What a regulariser ("arm") is: one class plus one `conf/reg/<name>.yaml` whose `_target_` names it.

An arm validates its own settings when built (`ConfigError` naming key, value and what is
allowed), says why torch's fused kernel cannot run it (`needs_custom`), and provides the
pieces a recurrent layer and the sequence model ask for. Every piece defaults to "nothing"
(None, or p = 0), so an arm overrides only what it changes:

    layer: norm_x / norm_h / norm_c   normalisers of W_ih·x, W_hh·h and the LSTM cell state
           state_dropout              p of one mask per sequence on h_{t-1} (Gal & Ghahramani)
           candidate_dropout          p of a fresh mask per step on the candidate (Semeniuta)
           zoneout                    per-state keep probabilities (Krueger)
           weight_hh                  a module W_hh passes through once per forward (weight drop)
    model: input_dropout / hidden_dropout / output_norm   modules on the raw input, before each
           later layer and the head, and after each layer
           penalty                    a loss term from each layer's output (AR/TAR), per member

Every model is a stack of E >= 1 members (benchmark/models/), so every module piece is built for E
members: its factory receives a `Site` (the member count, each member's arm, the layer's index and
the rows of per-step statistics), it acts on tensors that lead with the member dimension
((T, E, B, F) sequences, (E, B, F) steps), keeps parameters per member ((E, …)), and draws random
tensors through `benchmark.models.masks` (row e from member e's stream). A piece written that way
stacks with no change to the package (docs/extending.md; `benchmark.models.check.check_arm` tests it).
An arm also contributes its columns of the run record (`identity`) and declares its variants
(`variants`): placements, paper and one-line description, from which benchmark/arms/variants.py
builds the registry.

This module is torch-free (the variant registry and the report import it); arms import their
torch pieces inside the factory methods.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, TypeVar, Union

from benchmark.core.config import ConfigError

REG_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "reg"
# One reg/ folder, or several in Hydra's precedence (the first that holds an option wins: confpath.SearchPath)
Folders = Union[Path, Sequence[Path]]
V = TypeVar("V")


@dataclass(frozen=True)
class Site:
    """Where a piece goes and whom it serves: the stack's members and the layer.

    arms: member e's arm, one per member (their `stack_key`s are equal; settings it leaves out, such as
        output dropout's p, may differ: read them with `each`).
    layer: the 0-based index of the recurrent layer the piece belongs to: a layer's own pieces, its
        `output_norm` and `penalty` say which layer; `input_dropout`/`embedding_dropout` see 0, the
        `hidden_dropout` before layer k sees k (the head's input: num_layers).
    steps: rows of per-step population statistics the norms keep (`Arm.stats_steps`), or None.
    """

    arms: tuple["Arm", ...]
    layer: int = 0
    steps: Optional[int] = None

    @property
    def members(self) -> int:
        """E: every tensor the piece keeps or draws leads with one row per member."""
        return len(self.arms)

    def each(self, value: Callable[["Arm"], V]) -> tuple[V, ...]:
        """One value per member, read from each member's arm (e.g. `site.each(lambda a: a.dropout.p)`)."""
        return tuple(value(a) for a in self.arms)

    def at(self, layer: int) -> "Site":
        return dataclasses.replace(self, layer=layer)


@dataclass(frozen=True)
class ArmVariant:
    """One variant an arm declares: `<option>[.<placement>]` and how to build it.

    overrides: `reg.<key>=<value>` after `reg=<option>`, e.g. ("reg.bn.placement=input",).
    impls: the impls the step benchmarks time it on (`native` and/or `custom`).
    targets: {(device, impl): max step-time ratio to native `none`} where the suite sets one.
    """

    placement: Optional[str]
    overrides: tuple[str, ...]
    impls: tuple[str, ...]
    paper: str
    description: str
    targets: Mapping[tuple[str, str], float] = field(default_factory=dict)


class Arm:
    """No regularisation anywhere; subclasses override the pieces they provide (module docstring).

    Class attributes:
        blocks: config blocks the arm reads, `{block: dataclass}` (settings under `reg.<block>.<key>`).
        order: where the arm's variants sit in tables and benchmarks (lower first; ties by name).
    """

    blocks: ClassVar[dict[str, type]] = {}
    order: ClassVar[int] = 100

    def __init__(self, name: str, **blocks: Any) -> None:
        self.name = name
        self.config = {b: typed(cls, blocks.pop(b, None), f"reg.{b}") for b, cls in self.blocks.items()}
        for key, value in blocks.items():  # a sweep over arms may set another arm's block: kept in the id only
            if not isinstance(value, Mapping) or key not in known_blocks():
                raise ConfigError(
                    f"reg.{key}",
                    value,
                    "the arm's blocks: " + (", ".join(self.blocks) or "none"),
                    f"reg={name} is {type(self).__name__}.",
                )

    # --- impls -----------------------------------------------------------------------------------
    def needs_custom(self) -> list[str]:
        """Why torch's fused module cannot run this arm (config keys and values); empty: it can."""
        return []

    # --- pieces of one recurrent layer (each built for `site.members` members) ------------------------
    def norm_x(self, site: Site, features: int) -> Any:
        """Normaliser of W_ih·x over (T, E, B, features) with a per-step `.step(x, t)` on (E, B, features) too;
        None = none."""
        return None

    def norm_h(self, site: Site, features: int) -> Any:
        """Normaliser of W_hh·h_{t-1}, called per step as `.step(x, t)` on (E, B, features); None = none."""
        return None

    def norm_c(self, site: Site, features: int) -> Any:
        """Normaliser of the LSTM cell state before its output tanh, `.step(c, t)`; None = none."""
        return None

    def state_dropout(self) -> float:
        """p of the per-sequence inverted-dropout mask on h_{t-1} inside the recurrence (0 = off)."""
        return 0.0

    def candidate_dropout(self) -> float:
        """p of the per-step inverted-dropout mask on the cell's candidate update (0 = off)."""
        return 0.0

    def zoneout(self, has_cell_state: bool) -> Optional[tuple[float, ...]]:
        """Keep probabilities per state tensor, (p_h,) or (p_h, p_c); None = off."""
        return None

    def weight_hh(self, site: Site, gates_hidden: int, hidden: int) -> Any:
        """A module W_hh (E, gates_hidden, hidden) passes through once per forward; None = W_hh as is."""
        return None

    # --- pieces of the sequence model ---------------------------------------------------------------
    def input_dropout(self, site: Site, features: int) -> Any:
        """Module on the raw task input (T, E, B, features); None = identity."""
        return None

    def hidden_dropout(self, site: Site, features: int) -> Any:
        """Module before layer `site.layer` >= 1 and before the head, on (T, E, B, features); None = identity."""
        return None

    def embedding_dropout(self, site: Site, features: int) -> Any:
        """Module on a token embedding's output (T, E, B, features), the literature's input dropout; None = identity."""
        return None

    def output_norm(self, site: Site, features: int) -> Any:
        """Module after layer `site.layer`'s output (T, E, B, features); None = identity."""
        return None

    def penalty(self, site: Site, features: int) -> Any:
        """A loss term: a module called in training with layer `site.layer`'s output (T, E, B, features) that
        returns one value per member, (E,), added to that member's training loss (the record keeps it apart:
        `train_penalty`); None = none. E.g. activation regularisation (Merity et al. 2018)."""
        return None

    # --- run-level facts --------------------------------------------------------------------------
    def stats_steps(self, total_len: Optional[int]) -> Optional[int]:
        """Rows of per-step population statistics the norms keep; None when there are none."""
        return None

    def min_batch_size(self) -> int:
        """The smallest train.batch_size the arm is defined for (BN: 2)."""
        return 1

    def precise_batches(self) -> int:
        """Training batches per precise-BN estimate before each evaluation; 0 = none."""
        return 0

    def identity(self, total_len: Optional[int]) -> dict[str, Any]:
        """The arm's columns of the run record (benchmark/core/record.py), beyond `reg` and `reg_params`."""
        return {}

    def params(self) -> Optional[str]:
        """The arm's settings as overrides relative to `reg`, e.g. `weightdrop.p=0.5` (record's `reg_params`)."""
        items = [f"{b}.{k}={_plain(v)}" for b, cfg in self.config.items() for k, v in dataclasses.asdict(cfg).items()]
        return " ".join(items) or None

    @classmethod
    def id_node(cls, node: Mapping[str, Any]) -> dict[str, Any]:
        """The `reg` node as it enters the run id: the resolved node without `_target_`."""
        return {k: v for k, v in node.items() if k != "_target_"}

    @classmethod
    def variants(cls, option: str) -> list[ArmVariant]:
        """The variants of `reg=<option>` (the YAML's file name); default: one, the arm as configured."""
        return [ArmVariant(None, (), ("custom",), "", f"user arm {cls.__module__}.{cls.__qualname__}")]

    def stack_key(self) -> Any:
        """What two runs of this arm must share to train as one stack (benchmark/models/stack.py): by default
        every setting. An arm may leave out a setting that its pieces read per member (`Site.each`; output
        dropout's p: `DropoutArm`), so a stack's members may differ in it."""
        return (type(self), self.name, self.config)

    def __eq__(self, other: object) -> bool:
        """The same arm class with the same name and settings."""
        return type(self) is type(other) and (self.name, self.config) == (other.name, other.config)

    __hash__ = None  # type: ignore[assignment]  (settings are mutable dataclasses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.config})"


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, enum.Enum) else v


# --- typed blocks ----------------------------------------------------------------------------------


def typed(cls: type, node: Any, prefix: str) -> Any:
    """A block of settings as its dataclass: unknown keys and wrong types raise ConfigError."""
    if node is None:
        return cls()
    if isinstance(node, cls):
        return node
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(node, Mapping):
        raise ConfigError(prefix, node, "a mapping with keys " + ", ".join(names))
    unknown = [k for k in node if k not in names]
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}", node[unknown[0]], "the keys " + ", ".join(names))
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(f"{prefix}.{k}", v, hints[k]) for k, v in node.items()})


def _coerce(key: str, v: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        return None if v is None else _coerce(key, v, next(a for a in args if a is not type(None)))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(_plain(v))
        except ValueError:
            raise ConfigError(key, v, "one of: " + " | ".join(m.value for m in hint)) from None
    if hint is bool and isinstance(v, bool):
        return v
    if hint is int and isinstance(v, int) and not isinstance(v, bool):
        return v
    if hint is float and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ConfigError(key, v, f"a value of type {getattr(hint, '__name__', hint)}")


# --- building arms ---------------------------------------------------------------------------------


def require_arm(obj: Any, key: str = "reg._target_") -> Arm:
    """`obj` if it is an Arm; ConfigError naming `key` otherwise."""
    if not isinstance(obj, Arm):
        raise ConfigError(key, type(obj).__name__, "an instance of a subclass of benchmark.arms.Arm")
    return obj


def arm_class(target: str, key: str = "reg._target_") -> type[Arm]:
    """The class a `_target_` names; ConfigError when it is not importable or not an Arm."""
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(key, target, "an importable subclass of benchmark.arms.Arm", str(e)) from None
    if not (isinstance(cls, type) and issubclass(cls, Arm)):
        raise ConfigError(key, target, "a subclass of benchmark.arms.Arm")
    return cls


def build_arm(node: Mapping[str, Any]) -> Arm:
    """An arm from its resolved `reg` node ({_target_, name, <blocks>}), as Hydra's instantiate would."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError("reg", node, "a config from conf/reg/ with a _target_")
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    kwargs.setdefault("name", str(node["_target_"]).rpartition(".")[2])
    return arm_class(node["_target_"])(**kwargs)


def id_form(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved run config as the run id hashes it: `reg` in its arm's `id_node` form.

    Used by every place that computes a run id (benchmark/job/prepare.py, benchmark/sweep/status.py).
    A `reg` without `_target_` (written before arms were plugins) is left as it is.
    """
    node = resolved.get("reg")
    if not isinstance(node, Mapping) or "_target_" not in node:
        return dict(resolved)
    return {**resolved, "reg": arm_class(node["_target_"]).id_node(node)}


def load_node(option: str, overrides: Sequence[str] = (), conf_dir: Folders = REG_CONF_DIR) -> dict[str, Any]:
    """conf/reg/<option>.yaml with `overrides` relative to reg (`bn.placement=input`), as a plain dict.

    Composes as Hydra does for `reg=<option> reg.<override>`: the file's `defaults` (other options of
    conf/reg/, e.g. both.yaml's bn and dropout) first, then the file itself, then the overrides; each
    option from the first of the `conf_dir` folders that holds it.
    """
    from omegaconf import OmegaConf

    return OmegaConf.to_container(
        OmegaConf.merge(_compose(option, _folders(conf_dir)), OmegaConf.from_dotlist(list(overrides)))
    )


def _folders(conf_dir: Folders) -> tuple[Path, ...]:
    return (Path(conf_dir),) if isinstance(conf_dir, (str, Path)) else tuple(Path(d) for d in conf_dir)


def _compose(option: str, folders: tuple[Path, ...]) -> Any:
    from omegaconf import OmegaConf

    path = next((p for d in folders if (p := d / f"{option}.yaml").is_file()), None)
    if path is None:
        raise ConfigError("reg", option, "one of: " + ", ".join(options(folders)))
    own = OmegaConf.load(path)
    defaults = list(own.pop("defaults", []))
    parts = [own if d == "_self_" else _compose(str(d), folders) for d in defaults] or [own]
    if "_self_" not in defaults:
        parts.append(own)
    return OmegaConf.merge(*parts)


def load_arm(option: str, *overrides: str, conf_dir: Folders = REG_CONF_DIR) -> Arm:
    """The arm `reg=<option> reg.<override>...` builds, e.g. load_arm("bn", "bn.placement=input")."""
    return build_arm(load_node(option, overrides, conf_dir))


def options(conf_dir: Folders = REG_CONF_DIR) -> list[str]:
    """The `reg` options: every conf/reg/*.yaml (of every folder given)."""
    return sorted({p.stem for d in _folders(conf_dir) for p in d.glob("*.yaml")})


def arms_in(conf_dir: Folders) -> dict[str, type[Arm]]:
    """{option: arm class} of every reg/ option in the folders, by each YAML's `_target_` (the class a run builds)."""
    return {
        o: arm_class(load_node(o, (), conf_dir)["_target_"], f"conf/reg/{o}.yaml: _target_") for o in options(conf_dir)
    }


def package_arms() -> dict[str, type[Arm]]:
    """{option: arm class} of conf/reg/, by each YAML's `_target_`."""
    return arms_in(REG_CONF_DIR)


_KNOWN_BLOCKS: Optional[frozenset[str]] = None


def known_blocks() -> frozenset[str]:
    """Block names of the arms in conf/reg/ (a sweep over them may set each one's block)."""
    global _KNOWN_BLOCKS
    if _KNOWN_BLOCKS is None:
        _KNOWN_BLOCKS = frozenset(b for cls in package_arms().values() for b in cls.blocks)
    return _KNOWN_BLOCKS
