"""The grid of a sweep: parsing ``--depths``, ``--flops`` and ``--grid``, the sweep's settings
(``SweepConfig``), the dataset it trains on, every trial's shape, tokens, steps and epochs, and
the dry run that prices them and checks that each budget's depths bracket its optimum.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanogpt import scaling
from nanogpt.config import TrainConfig
from nanogpt.results_row import planned_row
from nanogpt.sweep.trial_eval import EvalPlan, TrialEval, plan_trial_eval

# MFU of the whole training step at each DEPTH on one H200 (bf16, torch.compile, 1024 context,
# 32 sequences per step, MuonAdamW included). DEPTH 6-14: the project's tokens/s in
# docs/benchmarks.md, "Against nanoGPT, DEPTH 6-14" > "Same-call table, 2026-12-04" (1,846,407 /
# 1,150,882 / 750,594 / 504,317 / 352,944 tokens/s, the training default of that day), times
# scaling.flops_per_token at that shape (GPT-2 vocabulary), over the H200's 989 TFLOP/s peak;
# tests/test_sweep.py re-derives them from that table. DEPTH 2 and 4 are figures for a plain GPT
# at those sizes. The dry run turns these into an estimated time per trial; --throughput
# overrides them with your own measurement.
MEASURED_H200_MFU = {2: 0.16, 4: 0.27, 6: 0.388, 8: 0.414, 10: 0.43, 12: 0.436, 14: 0.44}
# A trial that would see its training data more often than this is refused unless the sweep
# allows repeats: a repeated corpus measures memorisation, not the scaling of a fresh stream.
MAX_EPOCHS = 1.2
# Chinchilla's compute-optimal ratio, about 20 tokens per parameter (Hoffmann et al. 2022,
# arXiv:2203.15556, Table 3), for the dry run's bracket check when no earlier fit is given.
CHINCHILLA_TOKENS_PER_PARAM = 20.0


# --- parsing ----------------------------------------------------------------------------------


def parse_depths(text: str) -> list[int]:
    """``6..14`` (inclusive), ``6..14:2`` (with a step) or ``6,8,12``."""
    try:
        if ".." in text:
            span, _, step = text.partition(":")
            lo, hi = (int(x) for x in span.split(".."))
            depths = list(range(lo, hi + 1, int(step) if step else 1))
        else:
            depths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--depths {text!r}: expected A..B, A..B:STEP or a list like 6,8,12"
        ) from None
    if not depths or min(depths) < 1:
        raise ValueError(f"--depths {text!r}: depths must be whole numbers >= 1")
    return sorted(set(depths))


def parse_flops(text: str, num: int = 3) -> list[float]:
    """``1e18..6e18`` with ``num`` log-spaced points (ends included), or ``1e18,3e18,6e18``."""
    try:
        if ".." in text:
            lo, hi = (float(x) for x in text.split(".."))
            if num < 1:
                raise ValueError
            if num == 1 or lo == hi:
                budgets = [lo]
            else:
                ratio = (hi / lo) ** (1.0 / (num - 1))
                budgets = [float(f"{lo * ratio**i:.4g}") for i in range(num)]
        else:
            budgets = [float(x) for x in text.split(",") if x.strip()]
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"--flops {text!r}: expected A..B (with --num-flops K) or a list like 1e18,3e18"
        ) from None
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"--flops {text!r}: budgets must be positive")
    return sorted(set(budgets))


def parse_grid(text: str) -> dict[float, list[int]]:
    """``2e11:1..4;6e11:2..5``: each budget with its own depths (a grid need not be a rectangle:
    each budget's sizes sit around its own optimum)."""
    grid: dict[float, list[int]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        budget, sep, depths = part.partition(":")
        if not sep:
            raise ValueError(
                f"--grid {text!r}: expected BUDGET:DEPTHS;BUDGET:DEPTHS, e.g. 2e11:1..4"
            )
        grid[parse_flops(budget.strip())[0]] = parse_depths(depths.strip())
    if not grid:
        raise ValueError(f"--grid {text!r}: no budgets")
    return dict(sorted(grid.items()))


def trial_key(depth: int, flops_budget: float, seed: int) -> str:
    return f"d{depth:02d}_c{flops_budget:.3g}_s{seed}".replace("+", "")


# --- the dataset a sweep trains on ---------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """What the grid needs to know about the training data."""

    path: str  # the dataset directory (absolute)
    tokenizer: str  # gpt2 or bytes, from its meta.json
    vocab_size: int
    train_tokens: int | None  # None: not prepared yet
    prepare_command: str  # how to make it

    @property
    def prepared(self) -> bool:
        return self.train_tokens is not None

    @property
    def name(self) -> str:
        return Path(self.path).name


def describe_dataset(name_or_path: str) -> Dataset:
    """The dataset behind ``--data``, prepared or not (the dry run prices a grid either way)."""
    from nanogpt import data as data_mod

    text = str(name_or_path)
    path = Path(text).expanduser()
    if not path.is_absolute() and "/" not in text and not path.is_dir():
        path = data_mod.data_root() / text
    path = path.resolve()
    command = data_mod.prepare_command(path)
    try:
        data_mod.resolve_data_dir(path)
        tokenizer, vocab = data_mod.dataset_tokenizer(path)
        tokens = data_mod.count_tokens(path, "train")
    except FileNotFoundError:
        from nanogpt.tokenizer import VOCAB_SIZES

        tokens = None  # priced as it will be once prepared
        tokenizer = "bytes" if path.name.endswith("_bytes") else "gpt2"
        vocab = VOCAB_SIZES[tokenizer]
    return Dataset(str(path), tokenizer, vocab, tokens, command)


# --- the sweep's settings ---------------------------------------------------------------------------


TRIAL_RUNNERS = ("auto", "ray-train")


@dataclass
class SweepConfig:
    depths: list[int] = field(default_factory=list)  # with flops: every depth at every budget
    flops: list[float] = field(default_factory=list)
    # Each budget with its own depths; when given, depths x flops is not used
    depths_by_budget: dict[float, list[int]] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    name: str = "isoflop"
    storage: str = "sweeps_out"  # a directory; or a URI for Ray's storage (see docs)
    address: str | None = None  # an existing Ray cluster; None starts a local one
    gpus_per_trial: int = 1  # GPUs (= Ray Train workers) per trial
    trials_per_gpu: int = 1  # pack this many trials onto one GPU (fractional GPU resources)
    # CPU-only clusters: one gloo worker per trial with this many CPUs; below 1, several trials
    # share a CPU (Ray's fractional resources), so one trial's Ray start-up overlaps another's
    # training
    cpus_per_trial: float = 1.0
    # "auto": a CPU trial (one worker) runs train() in its Tune trial process, a GPU trial runs
    # a TorchTrainer over its GPUs; "ray-train": a TorchTrainer always (Ray Train's worker
    # restarts and checkpoint storage also on CPU clusters)
    trial_runner: str = "auto"
    max_concurrent: int = 0  # 0: as many as the cluster's resources hold
    resume: bool = False
    allow_repeat: bool = False  # let trials see their training data more than MAX_EPOCHS times
    max_worker_restarts: int = 2  # Ray Train FailureConfig: worker-group restarts per trial
    max_trial_retries: int = 1  # Ray Tune FailureConfig: retries of a failed trial
    # A trial whose run has finished (its row is written) but that Tune has not completed after
    # this long is reported, and once every trial has its row the sweep ends without waiting.
    stuck_grace_s: float = 120.0
    analyze: bool = True  # fit scaling laws and draw plots at the end
    train: TrainConfig = field(default_factory=TrainConfig)
    # After training, each trial's final model is scored on this suite (--eval core): the
    # row's core column (nanogpt.sweep.trial_eval); the default evaluates nothing
    evaluation: TrialEval = field(default_factory=TrialEval)
    # Per-trial changes to the training config, keyed by trial_key (tests use this to plant
    # a divergence in one trial); not part of the swept values.
    trial_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Called as hook(metrics, run_dir, rank) at every report inside a trial's worker, before Ray
    # hears of it (ray_trial.ReportHook); the fault-tolerance tests kill a worker from one. It
    # must pickle (Ray ships it to the workers).
    report_hook: Callable[[dict[str, Any], Path, int], None] | None = None

    def __post_init__(self) -> None:
        if self.depths_by_budget is None:
            self.depths_by_budget = {b: sorted(self.depths) for b in sorted(self.flops)}
        if not self.depths_by_budget or not all(self.depths_by_budget.values()):
            raise ValueError("the sweep has no trials: give --depths and --flops, or --grid")
        if self.trials_per_gpu < 1 or self.gpus_per_trial < 1:
            raise ValueError("--trials-per-gpu and --gpus-per-trial must be >= 1")
        if self.trial_runner not in TRIAL_RUNNERS:
            raise ValueError(
                f"--trial-runner must be one of {TRIAL_RUNNERS}, got {self.trial_runner!r}"
            )
        if not 0 < self.cpus_per_trial:
            raise ValueError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")

    @property
    def points(self) -> list[tuple[int, float, int]]:
        """Every trial as (depth, budget, seed), budgets first."""
        assert self.depths_by_budget is not None
        return [
            (depth, budget, seed)
            for budget, depths in sorted(self.depths_by_budget.items())
            for depth in depths
            for seed in self.seeds
        ]

    @property
    def sweep_dir(self) -> Path:
        if "://" in self.storage:
            return Path("sweeps_out") / self.name
        return Path(self.storage).resolve() / self.name

    @property
    def ray_storage(self) -> str:
        return self.storage if "://" in self.storage else str(Path(self.storage).resolve())


# --- every trial of the grid ---------------------------------------------------------------------


def trial_spec(
    depth: int,
    budget: float,
    seed: int,
    train: TrainConfig,
    vocab_size: int,
    train_tokens: int | None,
) -> dict[str, Any]:
    """One trial as planned: shape, parameter counts, steps, tokens, epochs."""
    # The trainer's own shape (tied embeddings included), so that plan and run count alike.
    shape = dataclasses.replace(train, depth=depth).model_config(vocab_size).shape
    return {
        "trial_key": trial_key(depth, budget, seed),
        **planned_row(depth, budget, seed, shape, train.total_batch_size, train_tokens),
    }


def plan(sweep: SweepConfig, dataset: Dataset) -> list[dict[str, Any]]:
    """Every trial of the sweep, planned against its dataset."""
    return [
        trial_spec(d, c, s, sweep.train, dataset.vocab_size, dataset.train_tokens)
        for d, c, s in sweep.points
    ]


def check_plan(sweep: SweepConfig, dataset: Dataset, rows: list[dict[str, Any]]) -> None:
    """Refuse a grid that cannot run as asked, before anything starts."""
    if not dataset.prepared:
        raise FileNotFoundError(
            f"the sweep trains on {dataset.path}, which is not prepared; run "
            f"`{dataset.prepare_command}` first (or pass --data)"
        )
    for r in rows:
        if r["steps_planned"] < 1:
            raise ValueError(
                f"trial {r['trial_key']}: a budget of {r['flops_budget']:.3g} FLOPs is too small "
                f"for one step of {sweep.train.total_batch_size:,} tokens at DEPTH {r['depth']}; "
                "raise the budget or lower --total-batch-size"
            )
    repeating = [r for r in rows if (r["epochs_planned"] or 0) > MAX_EPOCHS]
    if repeating and not sweep.allow_repeat:
        worst = max(repeating, key=lambda r: r["epochs_planned"])
        raise ValueError(
            f"{len(repeating)} of {len(rows)} trials would repeat their data more than "
            f"{MAX_EPOCHS} times (the most: {worst['trial_key']}, {worst['epochs_planned']:.1f} "
            f"epochs of the {human(dataset.train_tokens or 0)} training tokens in "
            f"{dataset.path}); use a bigger dataset (FineWeb-Edu: python -m "
            "nanogpt.data.prepare fineweb_edu), smaller budgets, or pass --allow-repeat"
        )


# --- the dry run ----------------------------------------------------------------------------------


def human(x: float) -> str:
    """1234567 -> '1.23 M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def estimated_mfu(depth: int) -> float:
    """Interpolated (in DEPTH) from the measured H200 table; flat beyond its ends."""
    points = sorted(MEASURED_H200_MFU.items())
    if depth <= points[0][0]:
        return points[0][1]
    for (d0, m0), (d1, m1) in zip(points, points[1:]):
        if depth <= d1:
            return m0 + (m1 - m0) * (depth - d0) / (d1 - d0)
    return points[-1][1]


def optimal_depth(
    budget: float, train: TrainConfig, vocab_size: int, tokens_per_param: float
) -> int:
    """The DEPTH whose run at ``budget`` comes closest to ``tokens_per_param`` (log scale)."""
    best, best_gap = 1, math.inf
    for depth in range(1, 129):
        spec = trial_spec(depth, budget, 0, train, vocab_size, None)
        if spec["tokens_planned"] <= 0:
            break
        gap = abs(math.log(spec["tokens_per_param"] / tokens_per_param))
        if gap < best_gap:
            best, best_gap = depth, gap
    return best


def bracket_check(
    sweep: SweepConfig, dataset: Dataset, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM
) -> list[str]:
    """Per budget: do its depths bracket the compute-optimal size, and which would."""
    assert sweep.depths_by_budget is not None
    lines = []
    for budget, depths in sorted(sweep.depths_by_budget.items()):
        best = optimal_depth(budget, sweep.train, dataset.vocab_size, tokens_per_param)
        inside = min(depths) < best < max(depths)
        suggestion = f"{max(1, best - 2)}..{best + 2}"
        verdict = (
            "brackets it"
            if inside
            else f"does NOT bracket it (all {'smaller' if max(depths) <= best else 'larger'}"
            f" or at the edge); try depths {suggestion}"
        )
        lines.append(
            f"budget {budget:.3g}: optimum near DEPTH {best} by ~{tokens_per_param:g} tokens per "
            f"parameter; depths {min(depths)}..{max(depths)} {verdict}"
        )
    return lines


def dry_run(
    sweep: SweepConfig,
    dataset: Dataset,
    throughput: dict[int, float] | None = None,
    tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM,
) -> str:
    """The grid as a table: shapes, data, epochs, the time each trial should take on one H200,
    and whether each budget's depths bracket its compute-optimal size."""
    rows = plan(sweep, dataset)
    budgets = sweep.depths_by_budget or {}
    data_line = (
        f"data: {dataset.path} ({dataset.tokenizer} tokens, vocabulary {dataset.vocab_size:,}); "
        + (
            f"{dataset.train_tokens:,} training tokens"
            if dataset.prepared
            else f"NOT PREPARED: run `{dataset.prepare_command}` first"
        )
    )
    lines = [
        f"sweep {sweep.name!r}: {len(rows)} trials ({len(budgets)} budgets, "
        f"{len(sweep.seeds)} seed(s)); {sweep.train.total_batch_size:,} tokens per step, context "
        f"{sweep.train.seq_len}, width {sweep.train.aspect_ratio} x DEPTH",
        data_line,
        "| trial | depth | width | params_scaling | budget | steps | tokens | tokens/param "
        "| epochs | est. H200 tok/s | est. GPU-hours |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    total_hours = 0.0
    problems = []
    for r in rows:
        if throughput and r["depth"] in throughput:
            tok_s = throughput[r["depth"]]
        else:
            tok_s = (
                estimated_mfu(r["depth"]) * scaling.PEAK_BF16_FLOPS["H200"] / r["flops_per_token"]
            )
        hours = r["tokens_planned"] / tok_s / 3600 if tok_s else math.nan
        total_hours += hours
        if r["steps_planned"] < 1:
            problems.append(f"{r['trial_key']}: the budget is too small for one step")
        epochs = r["epochs_planned"]
        lines.append(
            f"| {r['trial_key']} | {r['depth']} | {r['n_embd']} | {human(r['params_scaling'])} "
            f"| {r['flops_budget']:.3g} | {r['steps_planned']:,} | {human(r['tokens_planned'])} "
            f"| {r['tokens_per_param']:.3g} | {'?' if epochs is None else f'{epochs:.3g}'} "
            f"| {human(tok_s)} | {hours:.3g} |"
        )
    lines.append(
        f"total: about {total_hours:,.3g} H200-hours of training (plus ~20 s of Ray start-up per "
        f"trial); the estimate uses measured MFU by DEPTH on one H200 (docs/benchmarks.md)"
    )
    repeating = [r for r in rows if (r["epochs_planned"] or 0) > MAX_EPOCHS]
    if repeating:
        problems.append(
            f"{len(repeating)} trials would see their data more than {MAX_EPOCHS} times; the "
            "sweep refuses to run them without --allow-repeat"
        )
    if not dataset.prepared:
        problems.append(f"the data is not prepared: `{dataset.prepare_command}`")
    lines += [f"bracket: {line}" for line in bracket_check(sweep, dataset, tokens_per_param)]
    lines += eval_lines(sweep, dataset, rows)
    lines += [f"warning: {p}" for p in problems]
    return "\n".join(lines)


def describe_eval_plan(
    eval_plan: EvalPlan | None,
    evaluation: TrialEval,
    error: str | None,
    forward_flops_per_token: list[float],
    training_flops: float,
) -> list[str]:
    """The dry run's lines about the evaluation: what, on which bundle, and what it costs."""
    if not evaluation.enabled:
        return ["evaluation: none (pass --eval core to score each trial's final model on CORE)"]
    subsample = (
        f"at most {evaluation.max_per_task} items per task (seeded)"
        if evaluation.max_per_task
        else "every item"
    )
    head = (
        f"evaluation: {evaluation.title} on each trial's final model, {subsample}, baselines "
        f"{evaluation.baselines}"
    )
    if eval_plan is None:
        return [head, f"warning: the sweep would stop before any trial: {error}"]
    flops = [eval_plan.total_tokens * f for f in forward_flops_per_token]
    share = sum(flops) / training_flops if training_flops else float("nan")
    return [
        f"{head}; bundle {eval_plan.bundle}",
        f"evaluation cost: {len(eval_plan.items)} tasks, {eval_plan.total_items:,} items, about "
        f"{human(eval_plan.total_tokens)} tokens per trial (forward only): {human(min(flops))}.."
        f"{human(max(flops))} FLOPs per trial, {share:.2%} of the sweep's training FLOPs "
        "(padding and generation's decode steps add to it)",
    ]


def eval_lines(sweep: SweepConfig, dataset: Dataset, rows: list[dict[str, Any]]) -> list[str]:
    """The dry run's account of ``--eval``: the suite, its bundle, its cost (or why it would
    stop the sweep)."""
    evaluation = sweep.evaluation
    eval_plan, error = None, None
    if evaluation.enabled:
        from nanogpt.evals.bundle import BundleError

        try:
            eval_plan = plan_trial_eval(evaluation, dataset.tokenizer, sweep.train.seq_len)
        except BundleError as e:
            error = str(e).replace("\n", "; ")
    # A forward pass is a third of a training step's FLOPs (6N + attention -> 2N + attention/3).
    forward = [r["flops_per_token"] / 3 for r in rows]
    training = sum(r["flops_per_token"] * r["tokens_planned"] for r in rows)
    return describe_eval_plan(eval_plan, evaluation, error, forward, training)
