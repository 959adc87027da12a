"""Talk to a checkpoint in the terminal: ``python -m nanogpt.chat --checkpoint PATH``.

A mid-trained checkpoint gets ``<|im_start|>role ... <|im_end|>`` turns and keeps the
conversation; a base (pretrained) model continues the text it is given, each prompt on its own.
``--format chat|raw`` overrides the guess. ``--compile auto`` (the default) compiles the decode
step on a GPU, so the first reply there waits ~15 s for the compile. Replies stream as they are
sampled; Ctrl-C stops a reply (the program stays), ``/quit`` or Ctrl-D leaves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

import torch

from nanogpt.engine import (
    COMPILE_CHOICES,
    PROMPT_FORMATS,
    Engine,
    load_model,
    prompt_format,
    render_prompt,
    resolve_compile,
)
from nanogpt.sampling import MAX_TEMPERATURE, SamplingParams

HELP = (
    "commands: /clear (forget the conversation), /temperature X (0 = greedy, at most 2), "
    "/topk K (0 = all tokens), /quit (or Ctrl-D); Ctrl-C stops a reply"
)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nanogpt.chat", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a step_NNNNNN directory or a run directory (its latest)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature, 0 = greedy (default 0.9)")  # fmt: skip
    p.add_argument("--top-k", type=int, default=200, help="keep the k most likely tokens, 0 = all (default 200)")  # fmt: skip
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep the smallest set with probability >= p")  # fmt: skip
    p.add_argument("--max-tokens", type=int, default=512, help="longest reply in tokens (default 512; less if the context is shorter)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="seed the sampling (default: random)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if there is one)")  # fmt: skip
    p.add_argument("--format", choices=PROMPT_FORMATS, default="auto", help="chat turns or raw text continuation (default: chat for mid-trained checkpoints)")  # fmt: skip
    p.add_argument("--system", default=None, help="a system message at the start of every chat")
    add_compile_flags(p)
    args = p.parse_args(argv)
    if args.max_tokens < 1:
        p.error(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.top_k < 0:
        p.error(f"--top-k must be >= 0 (0 = all), got {args.top_k}")
    try:
        args.params = make_params(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        p.error(str(e))
    return args


COMPILE_HELP = (
    "compile the decode step with torch.compile and capture it in the CUDA graph: auto (the "
    "default) = on for CUDA, off on a CPU or MPS; a bare --compile means true, --no-compile "
    "false. About 2x faster decoding on a GPU; each new cache-length bucket compiles once "
    "(~15 s on an H200)"
)


def add_compile_flags(p: argparse.ArgumentParser, help: str = COMPILE_HELP) -> None:
    """``--compile [auto|true|false]`` (a bare ``--compile`` is ``true``, as it used to be) and
    ``--no-compile``; resolve the value per device with nanogpt.engine.resolve_compile."""
    p.add_argument("--compile", nargs="?", const="true", default="auto", type=str.lower, choices=COMPILE_CHOICES, help=help)  # fmt: skip
    p.add_argument("--no-compile", dest="compile", action="store_const", const="false", help="the same as --compile false")  # fmt: skip


COMPILING = (
    "compiling the decode step (the first reply takes ~15 s on a GPU; --no-compile skips it)"
)


def make_params(
    temperature: float, top_k: int, top_p: float | None, seed: int | None
) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_k=top_k or None, top_p=top_p, seed=seed)


class ChatSession:
    """The conversation and the sampling settings; :meth:`reply` streams one answer."""

    def __init__(
        self,
        engine: Engine,
        fmt: str,
        params: SamplingParams,
        max_tokens: int,
        system: str | None = None,
    ) -> None:
        self.engine = engine
        self.format = fmt
        self.params = params
        self.max_tokens = max_tokens
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.clear()

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def command(self, line: str) -> str | None:
        """Run a /command; return what to print, or None to quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name == "/quit":
            return None
        if name == "/clear":
            self.clear()
            return "(conversation cleared)"
        if name == "/temperature":
            try:
                self.params = replace(self.params, temperature=float(arg))
            except ValueError:
                return f"/temperature needs a number between 0 and {MAX_TEMPERATURE}, got {arg!r}"
            return f"(temperature {self.params.temperature:g})"
        if name == "/topk":
            try:
                k = int(arg)
                if k < 0:
                    raise ValueError
                self.params = replace(self.params, top_k=k or None)
            except ValueError:
                return f"/topk needs a whole number >= 0 (0 = all tokens), got {arg!r}"
            return f"(top-k {self.params.top_k or 'all'})"
        return f"unknown command {name!r}; {HELP}"

    def _prompt(self, text: str) -> tuple[list[int], int]:
        """The prompt ids for ``text`` and the reply's token budget; drops the oldest turns
        (never the system message) when the conversation outgrows the context."""
        context = self.engine.model.config.sequence_len
        if self.format == "raw":
            history = [{"role": "user", "content": text}]  # a base model: each prompt alone
        else:
            history = [*self.messages, {"role": "user", "content": text}]
        while True:
            ids = render_prompt(self.engine.tokenizer, history, self.format)
            budget = min(self.max_tokens, context - len(ids))
            if budget >= min(self.max_tokens, 16) or len(history) <= 1:
                break
            first = 1 if history[0]["role"] == "system" else 0
            if len(history) - first <= 1:
                break
            del history[first]  # the oldest turn goes first
        if budget < 1:
            raise ValueError(
                f"this prompt is {len(ids)} tokens and the model's context is {context}; "
                "shorten it (or /clear)"
            )
        if self.format == "chat":
            self.messages = history
        return ids, budget

    def reply(self, text: str, out=sys.stdout) -> str:
        """Stream the reply to ``out``; Ctrl-C ends it early (the partial reply is kept)."""
        ids, budget = self._prompt(text)
        pieces: list[str] = []
        stream = self.engine.stream_text(ids, budget, self.params)
        try:
            for piece in stream:
                pieces.append(piece)
                out.write(piece)
                out.flush()
            out.write("\n")
        except KeyboardInterrupt:
            stream.close()
            out.write(" [stopped]\n")
        out.flush()
        reply = "".join(pieces)
        if self.format == "chat":
            self.messages.append({"role": "assistant", "content": reply})
        return reply


def banner(meta: dict, engine: Engine, fmt: str, params: SamplingParams) -> str:
    n_params = sum(p.numel() for p in engine.model.parameters())
    how = (
        "chat: <|im_start|>role ... <|im_end|> turns, the conversation is kept"
        if fmt == "chat"
        else "raw: a base model; it continues each text you type (no turns, no memory)"
    )
    return (
        f"nanogpt chat: {meta['path']} ({meta.get('tokenizer', 'gpt2')} tokenizer, "
        f"{n_params / 1e6:.1f}M parameters, {engine.device}, context "
        f"{engine.model.config.sequence_len})\n"
        f"format {how}\n"
        f"sampling: temperature {params.temperature:g}, top-k {params.top_k or 'all'}"
        + (f", top-p {params.top_p:g}" if params.top_p else "")
        + f"\n{HELP}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or default_device())
    weights = torch.bfloat16 if device.type == "cuda" else None  # bf16 weights on a GPU
    model, tokenizer, meta = load_model(args.checkpoint, device, weights)
    engine = Engine(model, tokenizer, compile=resolve_compile(args.compile, device))
    fmt = prompt_format(meta, args.format)
    session = ChatSession(engine, fmt, args.params, args.max_tokens, args.system)
    print(banner(meta, engine, fmt, session.params), flush=True)
    if engine.compile:
        print(COMPILING, flush=True)
    label = "you> " if fmt == "chat" else "text> "
    while True:
        try:
            line = input(label)
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\n(Ctrl-C stops a reply; /quit or Ctrl-D leaves)", flush=True)
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            said = session.command(line)
            if said is None:
                return 0
            print(said, flush=True)
            continue
        print("model> ", end="", flush=True)
        try:
            session.reply(line)
        except ValueError as e:
            print(f"\n{e}", flush=True)
        except KeyboardInterrupt:  # Ctrl-C before the first token arrived
            print(" [stopped]", flush=True)


if __name__ == "__main__":
    sys.exit(main())
