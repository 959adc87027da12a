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


@dataclass
class ModelConfig:
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; n_embd must divide by it
    n_embd: int = 768  # residual stream width
    vocab_size: int = scaling.CHAT_VOCAB  # token ids the model sees and emits (embedding is padded)
    sequence_len: int = 1024  # longest context in tokens (rotary tables are built for this)
    rope_base: float = 10000.0  # rotary embedding base frequency
    logit_softcap: float = 15.0  # tanh soft-cap on output logits; 0 turns it off
    z_loss: float = 0.0  # coefficient of the z-loss, mean(logsumexp(logits)^2); 0 turns it off
    tie_embeddings: bool = False  # share the token embedding with the output head

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
        if self.logit_softcap < 0 or self.z_loss < 0:
            raise ValueError("logit_softcap and z_loss must be >= 0 (0 turns them off)")

    @property
    def padded_vocab_size(self) -> int:
        return scaling.padded_vocab(self.vocab_size)

    @property
    def shape(self) -> scaling.ModelShape:
        return scaling.ModelShape(
            self.n_layer, self.n_embd, self.n_head, self.vocab_size, self.sequence_len
        )

    @classmethod
    def from_depth(cls, depth: int, **overrides: Any) -> ModelConfig:
        """The DEPTH knob: layers, width and heads from one number (see nanogpt.scaling)."""
        seq_len = overrides.pop("sequence_len", 1024)
        shape = scaling.shape_for_depth(depth, seq_len=seq_len)
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


MODEL_PRESETS = {"gpt2": gpt2}


# --- command line from dataclass fields -------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the comment on its line in the source."""
    source = inspect.getsource(cls)
    comments: dict[str, str] = {}
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    line_field: dict[int, str] = {}
    for tok in tokens:
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


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag-name`` per field, typed from the annotation, help from the comment."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
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
            help=f"{comments.get(f.name, '')} (default: {_default_text(f)})",
        )


def overrides_from_args(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}
