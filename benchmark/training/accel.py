"""Opt-in speed-ups of the custom recurrent loop: `accel=none|compile|graph` (default none).

A Python time loop launches several small kernels per step; on a GPU the launches, not
the arithmetic, set its speed. Two ways to remove them:

- `compile`: `torch.compile` of the per-step function `RecurrentLayer._step` only (the
  recurrent GEMM and the gate math of one step, for every member; Inductor fuses the element-wise work,
  forward and backward). Never the unrolled loop: its compile time grows superlinearly
  with T. One compiled function serves every layer (the layer is an argument, not a
  captured constant), so grid points of the same cell and shape in one process reuse it.
  Works on CPU and GPU.
- `graph`: forward + loss + backward of one fixed input shape captured once in a CUDA
  graph and replayed (`CudaGraphStep`, cached per shape in `GraphedForwardBackward`, a
  `benchmark.training.step.StepFn` the training loop takes in place of the eager step).
  CUDA only; config validation rejects it elsewhere.

Both keep the function: same parameters, same outputs (tests compare with the eager loop).
Time spent compiling or capturing is reported as `compile_s`, apart from throughput.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from benchmark.core.config import Accel, ConfigError
from benchmark.models.layer import RecurrentLayer
from benchmark.training.precision import autocast, sync
from benchmark.training.step import EagerStep, LossFn, penalty_of

RECOMPILE_LIMIT = 64  # cells × regs × train/eval × grad mode of a sweep in one process; default 8 is too few

_compiled_step: Optional[Callable[..., Any]] = None


def compiled_step() -> Callable[..., Any]:
    """The one compiled `RecurrentLayer._step` (built on first use).

    `dynamic=None`: the first call specialises on everything; when the step index t changes
    on the next call, Dynamo recompiles once with t symbolic, so T steps cost two compiles.
    """
    global _compiled_step
    if _compiled_step is None:
        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
        _compiled_step = torch.compile(RecurrentLayer._step)
    return _compiled_step


def apply(model: nn.Module, accel: Accel) -> nn.Module:
    """Prepare `model` for `accel` in place; returns it. `graph` needs no change to the model.

    Native layers (fused kernels) are left alone: only the custom loop has a step to compile.
    """
    if accel is Accel.graph:
        check_graph_device(next(model.parameters()).device)
    fn = compiled_step() if accel is Accel.compile else None
    for m in model.modules():
        if isinstance(m, RecurrentLayer):
            m.compiled_step = fn
    return model


def check_graph_device(device: torch.device) -> None:
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(
            "accel",
            "graph",
            "none or compile on this device",
            f"CUDA-graph capture needs a CUDA device; the model is on {device.type}"
            + ("" if torch.cuda.is_available() else " and torch sees no CUDA device")
            + ".",
        )


def first_call_s(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one synchronised call: the first call of a compiled step pays its compile."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


class Captured:
    """`body` (forward, loss, backward on static inputs) captured once in a CUDA graph; `replay()` re-runs it.

    Capture protocol (PyTorch's "whole network capture"): a few warm-up iterations on a side
    stream (cuDNN/cuBLAS pick kernels, autograd allocates), then the capture with `.grad`
    set to None so the backward allocates the gradients inside the graph's memory pool;
    those static tensors are assigned to `p.grad` after every replay. Replay overwrites
    them (no accumulation), as a step after `zero_grad(set_to_none=True)` would.
    `module`'s buffers (BN population statistics) and the mask generators' states are restored
    after warm-up and capture, so capturing leaves the run exactly as it found it. The model's own
    mask generators (`benchmark.models.masks`) are registered with the graph: each replay draws
    from each generator's current state and advances it as the eager step's draws would, so a
    replayed step uses the eager step's masks.
    """

    def __init__(
        self,
        body: Callable[[], Any],
        params: Sequence[Tensor],
        module: nn.Module,
        gens: Sequence[torch.Generator],
        device: torch.device,
        warmup: int = 3,
    ) -> None:
        t0 = time.perf_counter()
        self.params = list(params)
        buffers = {k: v.clone() for k, v in module.named_buffers()}
        states = [g.get_state() for g in gens]
        grads_before = [p.grad for p in self.params]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.enable_grad():
            for _ in range(warmup):
                for p in self.params:
                    p.grad = None
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        for p in self.params:
            p.grad = None
        for g, s in zip(gens, states):
            g.set_state(s)
        self.graph = torch.cuda.CUDAGraph()
        for g in gens:
            self.graph.register_generator_state(g)
        with torch.enable_grad(), torch.cuda.graph(self.graph):
            self.out = body()
        self.grads = [p.grad for p in self.params]
        with torch.no_grad():  # undo the warm-up's BN statistics updates
            for k, v in module.named_buffers():
                v.copy_(buffers[k])
        for g, s in zip(gens, states):
            g.set_state(s)
        for p, g in zip(self.params, grads_before):
            p.grad = g
        sync(device)
        self.capture_s = time.perf_counter() - t0

    def replay(self) -> Any:
        """Run the captured step; every parameter's `.grad` is then its static gradient. Returns body's output."""
        self.graph.replay()
        for p, g in zip(self.params, self.grads):
            p.grad = g
        return self.out


def mask_generators(model: nn.Module) -> list[torch.Generator]:
    """The model's members' random streams (`mask_gens`), to register with a graph."""
    return list(getattr(model, "mask_gens", None) or [])


class CudaGraphStep:
    """forward + loss + backward of a stack of one and one fixed input shape (B, T, I), captured once and replayed
    (`Captured`); returns the loss and the arm's loss term.

    Args:
        forward_only: capture just the forward (with autograd recording, as in training),
            for timing the forward on its own.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        x: Tensor,
        y: Tensor,
        autocast_dtype: Optional[torch.dtype] = None,
        warmup: int = 3,
        forward_only: bool = False,
    ) -> None:
        check_graph_device(x.device)
        self.model, self.device = model, x.device
        self.static_x, self.static_y = x.clone(), y.clone()

        def body() -> tuple[Tensor, Tensor]:
            with autocast(self.device.type, autocast_dtype, cache_enabled=False):
                out = model(self.static_x.unsqueeze(0))[0]
            loss = loss_fn(out, self.static_y)
            penalty = penalty_of(model, loss)
            if not forward_only:
                (loss + penalty).backward()
            return loss, penalty

        params = [p for p in model.parameters() if p.requires_grad]
        self.captured = Captured(body, params, model, mask_generators(model), self.device, warmup)
        self.capture_s = self.captured.capture_s

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Replay on (x, y) (copied into the static inputs); returns the loss and loss term, sets every p.grad."""
        self.static_x.copy_(x, non_blocking=True)
        self.static_y.copy_(y, non_blocking=True)
        return self.captured.replay()


class GraphedForwardBackward:
    """The training step of a stack of one as CUDA-graph replays (a `benchmark.training.step.StepFn`):
    `(x, y) -> (loss, penalty)` with gradients set, a graph per input shape, captured on first sight.

    Shapes are few in practice (the training batch; a timing batch). Each graph keeps its
    own memory pool: a shared pool is only safe when graphs replay in capture order, and
    shapes can come in any order. `capture_s` sums the capture time of all shapes.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, autocast_dtype: Optional[torch.dtype] = None) -> None:
        check_graph_device(next(model.parameters()).device)
        self.model, self.loss_fn, self.dtype = model, loss_fn, autocast_dtype
        self.graphs: dict[tuple[Any, ...], CudaGraphStep] = {}
        self.capture_s = 0.0

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        key = (tuple(x.shape), x.dtype, tuple(y.shape), y.dtype, self.model.training)
        g = self.graphs.get(key)
        if g is None:
            g = self.graphs[key] = CudaGraphStep(self.model, self.loss_fn, x, y, self.dtype)
            self.capture_s += g.capture_s
        return g(x, y)


def graph_step_fns(
    m: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, autocast_dtype: Optional[torch.dtype] = None
) -> tuple[tuple[Callable[[], None], Callable[[], None]], float]:
    """((forward, forward+backward) replays on (x, y), capture seconds) for `timing.time_model`.

    Each replay includes copying (x, y) into the static inputs, as a training step would.
    """
    f = CudaGraphStep(m, loss_fn, x, y, autocast_dtype, forward_only=True)
    fb = CudaGraphStep(m, loss_fn, x, y, autocast_dtype)

    def fwd() -> None:
        f(x, y)

    def fwd_bwd() -> None:
        fb(x, y)

    return (fwd, fwd_bwd), f.capture_s + fb.capture_s


def prime(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    autocast_dtype: Optional[torch.dtype] = None,
    accel: Accel = Accel.compile,
) -> Optional[float]:
    """Compile/capture seconds for `accel`, paid up front on a deep copy (the model is untouched).

    compile: one synchronised forward+backward in train mode, which compiles the step (twice: t
    static, then symbolic) forward and backward; later shapes or eval mode may compile again,
    uncounted. none: None. graph: the capture happens at the first training step (see train).
    """
    if accel is not Accel.compile:
        return None
    m = copy.deepcopy(model).train()
    step = EagerStep(m, loss_fn, autocast_dtype)
    with torch.enable_grad():
        return first_call_s(lambda: step(x, y), x.device)
