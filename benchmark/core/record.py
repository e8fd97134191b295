"""The run record: every key of a run's `metrics.json` and every column of its `history.csv`,
defined once (name, type, meaning). `benchmark.run` writes exactly these keys, the
aggregation reads them, the tests' synthetic runs are built from them, and a test checks the
table in docs/metrics.md against this module (`markdown_table()` prints it).

Scores: every task declares a trivial predictor's value of its metric (`metric_baseline`), a
perfect value (`metric_perfect`) and a direction (`metric_higher_is_better`); a score is the
metric normalised to 0 = trivial predictor, 1 = perfect, so higher is always better:
score = (metric - baseline) / (perfect - baseline). The analysis reads directions from
records only, never from metric or task names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SCHEMA_VERSION = 3


class Status(str, enum.Enum):
    """A finished run's `status`: the one list of run statuses (readers add their own states for
    folders that hold no finished run, e.g. `incomplete`, from these)."""

    ok = "ok"  # trained its budget (or stopped by a rule)
    diverged = "diverged"  # a non-finite loss or gradient norm stopped it; measured up to that step
    failed = "failed"  # an exception; the error and traceback are recorded, a re-run retries it

    def __str__(self) -> str:
        return self.value


# Runs that produced measurements (diverged: up to the step it stopped); a sweep re-runs the others.
MEASURED: tuple[str, ...] = (Status.ok.value, Status.diverged.value)


# BN gain inits whose start profiles a BN run also records: Cooijmans et al. (2016) show the gain's initial
# value decides between vanishing (small γ) and exploding (γ = 1) gradients through the per-step BN.
INIT_GAINS: tuple[float, ...] = (0.1, 0.5, 1.0)


def init_gain_key(gain: float) -> str:
    """The record key of the start profile at BN gain init `gain`."""
    return f"hidden_grad_profile_init_gain_{gain:g}"


def filled_gain_key(gain: float) -> str:
    """The record key of the ratio at initialisation, BN population filled, every BN gain set to `gain`."""
    return f"hidden_grad_ratio_init_filled_gain_{gain:g}"


@dataclass(frozen=True)
class Field:
    """One key of metrics.json. `kind`: who fills it (identity: known before training; result:
    measured; bookkeeping: written by the run's frame)."""

    name: str
    type: str
    meaning: str
    kind: str = "result"


F = Field
FIELDS: tuple[Field, ...] = (
    F(
        "schema_version",
        "int",
        "version of this record (2: scores and `lr` added; 3: `target_score` replaces `target_accuracy`)",
        "bookkeeping",
    ),
    F("complete", "bool", "`true` once written (the completion marker)", "bookkeeping"),
    F("status", "str", " | ".join(f"`{s.value}`" for s in Status)),
    F("diverged_at_step", "int?", "the step with the first non-finite loss or gradient norm"),
    F("error", "str?", '`"ExcType: message"` of a failed run'),
    F("traceback", "str?", "the traceback text of a failed run"),
    F("run_id", "str", "first 12 hex digits of sha256 over the resolved config (= the folder name)", "identity"),
    F("sweep", "str", "the sweep's name (`results/<sweep>/`)", "identity"),
    F("cell", "str", "`rnn` | `lstm` | `gru` | a user cell", "identity"),
    F(
        "reg",
        "str",
        "the arm's name: `none` | `bn` | `dropout` | `both` | `ln` | `zoneout` | another arm of "
        "`conf/reg/` or a user arm",
        "identity",
    ),
    F(
        "reg_params",
        "str?",
        "the arm's settings as overrides relative to `reg`, e.g. `zoneout.p_h=0.05 "
        "zoneout.p_c=0.5` (null for an arm without settings)",
        "identity",
    ),
    F(
        "reg_about",
        "str?",
        "what the arm says the run's variant is (its `variants()`: description, then the paper in parentheses); "
        "the report's words for an arm the variant registry does not hold, such as a user's",
        "identity",
    ),
    F("bn_placement", "str?", "`recurrent` | `input` | `output` (null unless BN is used)", "identity"),
    F("dropout_placement", "str?", "`output` | `variational` | `recurrent` (null unless dropout is used)", "identity"),
    F("dropout_p", "float?", "dropout probability (null unless dropout is used)", "identity"),
    F(
        "dropout_input_p",
        "float?",
        "dropout probability on the raw task input (`reg.dropout.input_p`, default 0; null unless dropout is used)",
        "identity",
    ),
    F(
        "bn_population",
        "str?",
        "`precise` (re-estimated over training batches before every evaluation) | `moving` (null unless BN is used)",
        "identity",
    ),
    F("bn_precise_batches", "int?", "training batches per precise-BN estimate (null when not precise)", "identity"),
    F(
        "bn_gain_init",
        "float?",
        "initial BN gain γ (0.1 for recurrent BN, Cooijmans et al. 2016; null without BN)",
        "identity",
    ),
    F("bn_stats_steps", "int?", "per-step BN population rows (recurrent BN; = the task's length)", "identity"),
    F("zoneout_p_h", "float?", "zoneout probability on h (`reg.zoneout.p_h`; null unless reg=zoneout)", "identity"),
    F(
        "zoneout_p_c",
        "float?",
        "zoneout probability on the LSTM cell (`reg.zoneout.p_c`; null unless reg=zoneout)",
        "identity",
    ),
    F("impl", "str", "requested: `native` | `custom` | `auto`", "identity"),
    F("impl_used", "str", "what ran: `native` | `custom`", "identity"),
    F("accel", "str", "`none` | `compile` | `graph`", "identity"),
    F("task", "str", "the task's name (`ucr.<dataset>` for `ucr`)", "identity"),
    F("seq_len", "int", "the length knob", "identity"),
    F("total_len", "int", "time steps the model sees (`seq_len + 20` for copy)", "identity"),
    F("seed", "int", "the run's seed (model initialisation, batches, dropout masks)", "identity"),
    F("hidden_size", "int", "hidden units per layer", "identity"),
    F("num_layers", "int", "recurrent layers", "identity"),
    F("batch_size", "int", "training batch size", "identity"),
    F("steps", "int", "training step budget", "identity"),
    F(
        "lr",
        "float",
        "`train.lr`, the peak learning rate (the analysis selects it per variant on validation)",
        "identity",
    ),
    F("device", "str", "`cpu` | `cuda`", "identity"),
    F("precision", "str", "`fp32` | `tf32` | `bf16`", "identity"),
    F("metric_name", "str", "the task's own metric (e.g. `mse`, `cross_entropy`, `error`)", "identity"),
    F("metric_baseline", "float?", "the metric of the task's trivial predictor (score 0)", "identity"),
    F("metric_perfect", "float?", "the metric of a perfect predictor (score 1)", "identity"),
    F("metric_higher_is_better", "bool", "the task's declared direction of `metric`", "identity"),
    F("target_score", "float", "the task's validation score that counts as solved (`task.target_score`)", "identity"),
    F(
        "stop_at_target",
        "bool",
        "time to target: training ends once the validation score reaches `target_score`",
        "identity",
    ),
    F("steps_done", "int", "training steps applied"),
    F("stopped_early", "bool", "training ended before its budget: by early stopping, or at the target"),
    F(
        "test_checkpoint",
        "str",
        "whose weights the test scores measure: `last` (the last step's) | `best_val` (with early stopping: the "
        "evaluation with the best validation score, whether or not the budget ran out)",
    ),
    F("test_step", "int", "the training step of the weights the test scores measure"),
    F("test_accuracy", "float?", "accuracy on the test split, eval mode"),
    F("test_metric", "float?", "the task metric on the test split"),
    F("test_loss", "float?", "the training loss on the test split"),
    F("test_score", "float?", "normalised test metric: 0 = trivial predictor, 1 = perfect (the verdicts' endpoint)"),
    F("train_accuracy", "float?", "accuracy on the first `n_test` training examples"),
    F("train_loss", "float?", "loss on the same examples"),
    F("train_metric", "float?", "the task metric on the same examples"),
    F("train_score", "float?", "normalised train metric"),
    F("val_score", "float?", "normalised validation metric of the final model (selects the learning rate)"),
    F("generalization_gap", "float?", "`train_accuracy - test_accuracy`"),
    F("best_val_accuracy", "float?", "best validation accuracy over the evaluations"),
    F("best_val_score", "float?", "best validation score over the evaluations"),
    F(
        "val_score_auc",
        "float?",
        "mean validation score over the budget's evaluations (area under the "
        "validation-score curve, normalised by its length; a run stopped at its target holds its last score): "
        "higher = learnt sooner",
    ),
    F("steps_to_target", "int?", "first evaluation step with validation score >= `target_score` (null: not reached)"),
    F(
        "train_penalty_mean",
        "float?",
        "the loss term the arm adds to the training loss (`Arm.penalty`, e.g. AR/TAR): mean over steps (null: none)",
    ),
    F("grad_norm_mean", "float?", "global L2 gradient norm before clipping: mean over steps"),
    F("grad_norm_max", "float?", "... its maximum"),
    F("grad_norm_std", "float?", "... its standard deviation"),
    F("clipped_fraction", "float?", "share of steps with norm > `train.max_norm` (0 when off)"),
    F("grad_norm_input", "float?", "mean over steps of the norm of `W_ih, b_ih`"),
    F("grad_norm_recurrent", "float?", "... of `W_hh, b_hh`"),
    F("grad_norm_norm", "float?", "... of the BN parameters (null without BN)"),
    F("grad_norm_head", "float?", "... of the output head"),
    F(
        "hidden_grad_profile_start",
        "list[float]?",
        "`‖∂L/∂h_t‖`, t = 1..T, of the top layer on a fixed probe batch before training",
    ),
    F("hidden_grad_profile_end", "list[float]?", "the same after training"),
    *(
        F(
            init_gain_key(g),
            "list[float]?",
            f"BN arms: the start profile with every BN gain set to γ = {g:g} (once per job: a cohort's first member)",
        )
        for g in INIT_GAINS
    ),
    F(
        "hidden_grad_ratio_start",
        "float?",
        "`‖∂L/∂h_first‖ / ‖∂L/∂h_last‖` before training, between the task's "
        "first and last memory-relevant steps (`h_1`, `h_T` unless the task says otherwise; copy: its probe loss "
        "is the recall window only): ≪ 1 vanishing, ≫ 1 exploding",
    ),
    F("hidden_grad_ratio_end", "float?", "the same after training"),
    F(
        "hidden_grad_ratio_init_filled",
        "float?",
        "the ratio at initialisation, eval mode, with BN's population statistics first filled by precise BN over "
        "training batches (the function training starts from; without BN: `hidden_grad_ratio_start`)",
    ),
    *(
        F(
            filled_gain_key(g),
            "float?",
            f"BN arms: the same with every BN gain set to γ = {g:g} before the filling (every member)",
        )
        for g in INIT_GAINS
    ),
    F(
        "train_tokens_per_s",
        "float?",
        "`batch_size × total_len` per step / time in training steps (in a stacked cohort: the member's share, the "
        "cohort's step time / its members stepping)",
    ),
    F("cohort_id", "str?", "the job that trained this run with others (its members' run ids hashed); null alone"),
    F("cohort_size", "int", "runs trained together in that job (1: alone)"),
    F(
        "cohort_mode",
        "str",
        "`solo` | `stacked` (one model with a member dimension) | `sequential` (one after another in one job)",
    ),
    F("train_jobs_beside", "int?", "other jobs of the sweep running on the machine during training"),
    F(
        "timing_jobs_beside",
        "int?",
        "other jobs running during the dedicated timing (timings beside jobs are not comparable with timings alone)",
    ),
    F("timing_load_avg", "float?", "the machine's 1-minute load average during the dedicated timing"),
    F("fwd_ms", "float?", "dedicated timing: median forward time (train mode)"),
    F("fwd_bwd_ms", "float?", "median forward+backward time"),
    F("fwd_ms_iqr", "float?", "interquartile range of the forward times"),
    F("fwd_bwd_ms_iqr", "float?", "interquartile range of the forward+backward times"),
    F("fwd_tokens_per_s", "float?", "tokens per second, forward"),
    F("fwd_bwd_tokens_per_s", "float?", "tokens per second, forward+backward"),
    F("timing_method", "str?", "`cuda_events` | `perf_counter`"),
    F("timing_batch_size", "int?", "batch size of the dedicated timing"),
    F("peak_memory_mb", "float?", "peak memory of the job"),
    F("peak_memory_kind", "str?", "`cuda_max_allocated` | `rss_hwm_delta` | `ru_maxrss_delta`"),
    F("compile_s", "float?", "`accel=compile`: first compiled step; `graph`: capture time; never in throughput"),
    F("env", "object", "device, versions, threads, git revision, host, clocks (docs/metrics.md)", "bookkeeping"),
    F("wall_s", "float", "the run's wall-clock seconds", "bookkeeping"),
)
KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS)
IDENTITY_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "identity")
RESULT_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "result")
LIST_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.type.startswith("list"))

# history.csv: one row every `train.log_interval` steps and at every evaluation; means over the
# steps since the previous row; the val_* columns are empty except on evaluation steps.
HISTORY: tuple[Field, ...] = (
    F("step", "int", "training steps done"),
    F("train_loss", "float", "mean training loss (the task's; an arm's loss term is `train_penalty`)"),
    F("train_penalty", "float?", "mean loss term the arm adds (`Arm.penalty`, e.g. AR/TAR); empty without one"),
    F("grad_norm", "float", "mean global gradient norm before clipping"),
    F("clipped", "float", "share of steps clipped"),
    F("lr", "float", "learning rate after the scheduler"),
    F("tokens_per_s", "float", "training tokens per second"),
    F("grad_norm_input", "float?", "mean norm of the input weights' gradient"),
    F("grad_norm_recurrent", "float?", "... recurrent weights"),
    F("grad_norm_norm", "float?", "... BN parameters"),
    F("grad_norm_head", "float?", "... head"),
    F("val_loss", "float?", "validation loss (evaluation steps only)"),
    F("val_accuracy", "float?", "validation accuracy"),
    F("val_metric", "float?", "validation task metric"),
    F("val_score", "float?", "validation score (0 = trivial predictor, 1 = perfect)"),
)
HISTORY_COLUMNS: tuple[str, ...] = tuple(f.name for f in HISTORY)


def score(metric: float | None, baseline: float | None, perfect: float | None) -> float | None:
    """(metric - baseline) / (perfect - baseline): 0 = the trivial predictor, 1 = perfect; None if undefined."""
    if metric is None or baseline is None or perfect is None or perfect == baseline:
        return None
    return (float(metric) - float(baseline)) / (float(perfect) - float(baseline))


def markdown_table(fields: tuple[Field, ...] = FIELDS) -> str:
    """The documentation table (docs/metrics.md holds this text; a test compares them)."""
    lines = ["| key | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{f.name}` | {f.type} | {f.meaning} |" for f in fields]
    return "\n".join(lines)
