"""Dataclass configs, and a command line generated from their fields.

Each field carries a one-line comment; that comment is the field's ``--help`` text, so the
documentation and the flag cannot drift apart. Precedence: field defaults < a preset (a plain
Python function such as :func:`gpt2`) < command-line flags. Unknown flags and values of the
wrong type are errors that name the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import tokenize
import typing
from dataclasses import dataclass
from typing import Any

from nanogpt import scaling
from nanogpt.tokenizer import N_VOCAB

LOSS_KERNELS = ("torch", "triton")


@dataclass
class ModelOptions:
    """The model's options beyond its shape, defined once: ModelConfig and TrainConfig both
    inherit these fields, so each is one ``--flag`` of ``python -m nanogpt.train``."""

    rope_base: float = 10000.0  # rotary embedding base frequency (docs/README_ROPE.md)
    logit_softcap: float = 15.0  # tanh soft-cap on output logits; 0 turns it off
    z_loss: float = 0.0  # coefficient of the z-loss, mean(logsumexp(logits)^2); 0 turns it off
    tie_embeddings: bool = False  # share the token embedding with the output head
    # The head + loss chunk by chunk (nanogpt/loss.py) or the plain full-logits path. None picks
    # fused on a CPU (2-3x faster there) and on a GPU with Triton (its one-kernel loss beats the
    # compiled plain path and saves ~8 GiB at batch 32 x 1024; docs/benchmarks.md); plain on a
    # GPU without Triton, where torch.compile fuses the plain path better than the chunked one.
    fused_loss: bool | None = None  # fuse head and loss chunk by chunk; none = on CPU or Triton GPU
    # "triton" on a CPU runs Triton's interpreter (tests only: it is slow).
    loss_kernel: str | None = None  # fused chunk kernel: torch or triton; none = triton on a GPU
    fused_qkv: bool = True  # one GEMM for queries, keys and values (same weights, same maths)
    fp8_head: bool = False  # head GEMMs of the training loss in FP8, scaled (CUDA sm89+ only)
    # Bigger chunks: fewer passes accumulating the head's fp32 gradient and taller GEMMs, for
    # (rows x padded vocabulary) bf16 logits of memory (0.8 GB per 8,192 rows at GPT-2's).
    loss_chunk_rows: int | None = None  # rows per chunk of the fused training loss; none = 32768
    # The Triton loss kernel's tanh as one instruction (PTX tanh.approx.f32, relative error about
    # 2^-11, below the bf16 logits' own rounding) or from an exp2 and a reciprocal (the exact
    # form, ~2 ulp). Only the GPU has the instruction: CPUs and the interpreter run the exact one.
    loss_hw_tanh: bool | None = None  # hardware tanh in the loss kernel; none = on with CUDA

    def option_problems(self) -> list[str]:
        """What is wrong with these options, each naming its flag; empty when all is well."""
        problems = []
        if not self.rope_base > 0:
            problems.append(f"--rope-base must be > 0, got {self.rope_base}")
        for name in ("logit_softcap", "z_loss"):
            if getattr(self, name) < 0:
                problems.append(
                    f"{name} (--{name.replace('_', '-')}) must be >= 0 (0 turns it off), "
                    f"got {getattr(self, name)}"
                )
        if self.loss_chunk_rows is not None and self.loss_chunk_rows < 1:
            problems.append(f"--loss-chunk-rows must be >= 1, got {self.loss_chunk_rows}")
        if self.loss_kernel is not None and self.loss_kernel not in LOSS_KERNELS:
            problems.append(
                f"--loss-kernel {self.loss_kernel!r} is not one of {', '.join(LOSS_KERNELS)}"
            )
        return problems

    def model_options(self) -> dict[str, Any]:
        """These fields as keyword arguments (for ``ModelConfig(**...)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelOptions)}


@dataclass
class ModelConfig(ModelOptions):
    """A model's shape plus its options. A checkpoint stores this; fields added later take
    their defaults when an older checkpoint is loaded."""

    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; n_embd must divide by it
    n_embd: int = 768  # residual stream width
    vocab_size: int = N_VOCAB  # token ids the model sees and emits (embedding is padded)
    sequence_len: int = 1024  # longest context in tokens (rotary tables are built for this)

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "vocab_size", "sequence_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                "pick a head count that divides the width"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"head width n_embd/n_head = {self.n_embd // self.n_head} must be even for "
                "rotary embeddings"
            )
        if problems := self.option_problems():
            raise ValueError("; ".join(problems))

    @property
    def padded_vocab_size(self) -> int:
        return scaling.padded_vocab(self.vocab_size)

    @property
    def shape(self) -> scaling.ModelShape:
        return scaling.ModelShape(
            self.n_layer,
            self.n_embd,
            self.n_head,
            self.vocab_size,
            self.sequence_len,
            self.tie_embeddings,
        )

    @classmethod
    def from_depth(
        cls,
        depth: int,
        aspect_ratio: int = scaling.WIDTH_PER_LAYER,
        head_dim: int = scaling.HEAD_DIM,
        **overrides: Any,
    ) -> ModelConfig:
        """The DEPTH knob: layers, width and heads from one number (see nanogpt.scaling)."""
        seq_len = overrides.pop("sequence_len", 1024)
        shape = scaling.shape_for_depth(
            depth, seq_len=seq_len, aspect_ratio=aspect_ratio, head_dim=head_dim
        )
        return cls(
            n_layer=shape.n_layer,
            n_head=shape.n_head,
            n_embd=shape.n_embd,
            sequence_len=seq_len,
            **overrides,
        )


def gpt2() -> ModelConfig:
    """GPT-2 small's shape: 12 layers, 12 heads, 768 wide, 1024 context (DEPTH=12)."""
    return ModelConfig.from_depth(12)


# --- command line from dataclass fields -------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """Map each field of a dataclass (its own and inherited ones) to the comment on its line."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        source = inspect.getsource(klass)
        line_field: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in line_field:
                line_field[tok.start[0]] = tok.string
            if tok.type == tokenize.COMMENT and tok.start[0] in line_field:
                comments[line_field[tok.start[0]]] = tok.string.lstrip("# ").strip()
    return comments


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else convert(text)

    return parse


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return str(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return str(f.default_factory())
    return "required"


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    exclude: frozenset[str] = frozenset(),
) -> None:
    """One ``--flag-name`` per field, typed from the annotation, help from the comment."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint = hints[f.name]
        origin_args = typing.get_args(hint)
        optional = type(None) in origin_args
        base = next((a for a in origin_args if a is not type(None)), hint) if optional else hint
        if base is bool:
            convert: Any = _parse_bool
        elif base in (int, float):
            convert = _number(base)
        else:
            convert = str
        if optional:
            convert = _optional(convert)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=convert,
            default=argparse.SUPPRESS,
            metavar=getattr(base, "__name__", "VALUE").upper(),
            # argparse %-formats help strings: a literal % in a comment must be doubled.
            help=f"{comments.get(f.name, '')} (default: {_default_text(f)})".replace("%", "%%"),
        )


def overrides_from_args(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}


# --- training ---------------------------------------------------------------------------------

MODES = ("pretraining", "mid-training", "all")
WANDB_MODES = ("disabled", "offline", "online")


# Validation tokens per evaluation when --eval-tokens is 0: a GPU evaluates 1 M tokens in
# seconds; a CPU needs minutes for that, so it gets 1/16 (a standard error of ~0.01 nats).
EVAL_TOKENS_GPU = 1_048_576
EVAL_TOKENS_CPU = 65_536


@dataclass
class TrainConfig(ModelOptions):
    """A training run. The model options (``ModelOptions``: --rope-base, --logit-softcap, ...)
    are inherited fields; the model's shape comes from --depth, --aspect-ratio and --head-dim."""

    depth: int = 12  # model size: n_layer = depth, n_embd = aspect_ratio*depth
    aspect_ratio: int = 64  # model width per layer: n_embd = aspect_ratio * depth
    head_dim: int = 64  # width of each attention head: n_head = n_embd / head_dim
    seq_len: int = 1024  # context length in tokens
    mode: str = "pretraining"  # pretraining, mid-training (from --checkpoint) or all (both)
    data: str | None = None  # dataset name or token-file directory; a:0.8,b:0.2 mixes
    target_flops: float = 0.0  # training FLOP budget; sets the steps when --num-iterations is 0
    num_iterations: int = 0  # optimizer steps; 0 = from --target-flops, else --tokens-per-param
    tokens_per_param: float = 20.0  # data:params ratio used when neither steps nor FLOPs are given
    mid_iterations: int = 0  # mid-training steps in --mode all; 0 = one pass over the mixture
    total_batch_size: int = 524288  # tokens per optimizer step, over all ranks and micro-steps
    device_batch_size: int = 32  # sequences per rank per micro-step
    lr_adamw: float = 6e-4  # peak AdamW rate for embedding, head and vectors at width 768
    lr_muon: float = 0.02  # peak Muon rate for the block matrices
    lr_min_ratio: float = 0.1  # final rate as a fraction of the peak (cosine decay)
    warmup_steps: int = 715  # linear warmup steps (capped at 10% of the run)
    weight_decay: float = 0.1  # decoupled weight decay at width 768 (scaled with the rates)
    adam_beta1: float = 0.9  # AdamW beta1
    adam_beta2: float = 0.95  # AdamW beta2
    muon_momentum: float = 0.95  # Muon's Nesterov momentum
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 turns it off
    loss_mask: str = "assistant"  # chat data: train on assistant tokens only, or on all
    eval_every: int = 250  # steps between validation evaluations (and the last step)
    eval_tokens: int = 0  # tokens per validation (all ranks); 0 = 1,048,576 on GPU, 65,536 on CPU
    core_evals: int = 0  # steps between CORE evaluations (and the last step); 0 = off
    chatcore_evals: int = 0  # steps between ChatCORE evaluations (and the last step); 0 = off
    eval_bundle: str | None = None  # CORE's Mosaic ICL bundle; none = $NANOGPT_EVAL_BUNDLE or cache
    chatcore_data: str | None = None  # ChatCORE's JSONL folder (arc_easy.jsonl, gsm8k.jsonl, ...)
    eval_max_per_task: int = 200  # items per task in CORE/ChatCORE (a fixed subsample); 0 = all
    save_every: int = 1000  # steps between checkpoints (and the last step); 0 = only the last
    keep_checkpoints: int = 3  # how many of the latest checkpoints to keep; 0 keeps all
    checkpoint: str | None = None  # initialise the weights from this checkpoint directory
    resume: str | None = None  # auto (latest in the run directory) or a checkpoint directory
    out_dir: str = "logs"  # runs are written to out_dir/run_name
    run_name: str | None = None  # default: d<depth>-<mode>
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    compile: bool = False  # torch.compile the model
    fast_optimizer: bool | None = None  # compiled Muon+AdamW steps; None: on with CUDA
    wandb: str = "disabled"  # disabled, offline or online
    wandb_project: str = "nanogpt"  # wandb project name
    wandb_group: str | None = None  # wandb group (the sweep sets one per sweep)
    seed: int = 1337  # seed for weights and data order
    log_every: int = 1  # steps between log lines (each costs a host sync)
    blowup_factor: float = 1.5  # after warmup: diverged if smoothed loss > this x its best
    stop_at_step: int = 0  # stop early at this step as if preempted (checkpoint kept; for tests)
    debug_nan_at_step: int = -1  # make the loss NaN at this step (to test divergence handling)

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.wandb not in WANDB_MODES:
            problems.append(f"--wandb {self.wandb!r} is not one of {', '.join(WANDB_MODES)}")
        if self.loss_mask not in ("assistant", "all"):
            problems.append(f"--loss-mask {self.loss_mask!r} is not 'assistant' or 'all'")
        if self.depth < 1:
            problems.append(f"--depth must be at least 1, got {self.depth}")
        else:
            try:
                scaling.shape_for_depth(self.depth, 1, 1, self.aspect_ratio, self.head_dim)
            except ValueError as e:
                problems.append(f"--aspect-ratio / --head-dim: {e}")
        for name in ("seq_len", "total_batch_size", "device_batch_size", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                problems.append(f"{flag} must be at least 1, got {getattr(self, name)}")
        for name in (
            "num_iterations", "target_flops", "save_every", "warmup_steps", "eval_tokens",
            "keep_checkpoints", "core_evals", "chatcore_evals", "eval_max_per_task",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                flag = "--" + name.replace("_", "-")
                problems.append(f"{flag} must be >= 0, got {getattr(self, name)}")
        if self.mode == "mid-training" and not (self.checkpoint or self.resume):
            problems.append(
                "--mode mid-training starts from a pretrained model: pass --checkpoint "
                "logs/<run>/step_NNNNNN (or --resume auto to continue a mid-training run)"
            )
        problems += self.option_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def eval_tokens_on(self, device_type: str) -> int:
        """--eval-tokens, or its default for this kind of device when it is 0."""
        if self.eval_tokens > 0:
            return self.eval_tokens
        return EVAL_TOKENS_GPU if device_type == "cuda" else EVAL_TOKENS_CPU

    def model_config(self, vocab_size: int = N_VOCAB) -> ModelConfig:
        """The model for this run; ``vocab_size`` comes from the data's tokenizer."""
        return ModelConfig.from_depth(
            self.depth,
            aspect_ratio=self.aspect_ratio,
            head_dim=self.head_dim,
            vocab_size=vocab_size,
            sequence_len=self.seq_len,
            **self.model_options(),
        )


def tiny_cpu() -> dict[str, Any]:
    """A model and batch small enough to train in a minute on a laptop CPU."""
    return dict(
        depth=2,
        seq_len=128,
        total_batch_size=4096,
        device_batch_size=16,
        num_iterations=200,
        warmup_steps=20,
        eval_every=50,
        eval_tokens=16384,
        lr_adamw=3e-3,
    )


def gpt2_train() -> dict[str, Any]:
    """GPT-2 small (DEPTH 12) at its classic batch of 524,288 tokens."""
    return dict(depth=12, seq_len=1024, total_batch_size=524288, device_batch_size=32)


TRAIN_PRESETS = {"gpt2": gpt2_train, "tiny": tiny_cpu}


def parse_train_config(argv: list[str] | None = None) -> TrainConfig:
    """defaults < --preset < flags; unknown flags and wrong types are errors naming the flag."""
    from nanogpt.data.paths import data_root_help  # the data package is above this module

    parser = argparse.ArgumentParser(
        prog="python -m nanogpt.train",
        description="Train a GPT (pretraining, mid-training or both). Every flag is a field of "
        "nanogpt.config.TrainConfig.",
        epilog=data_root_help(),
    )
    parser.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="start from a named preset")
    options = frozenset(f.name for f in dataclasses.fields(ModelOptions))
    add_dataclass_arguments(parser, TrainConfig, exclude=options)
    group = parser.add_argument_group("model options (nanogpt.config.ModelOptions)")
    add_dataclass_arguments(group, ModelOptions)
    args = parser.parse_args(argv)
    values = TRAIN_PRESETS[args.preset]() if args.preset else {}
    values.update(overrides_from_args(args, TrainConfig))
    try:
        return TrainConfig(**values)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits
