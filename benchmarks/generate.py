"""Generation speed: nanogpt's engine beside Hugging Face transformers' GPT-2, in one run.

    python benchmarks/generate.py                              # DEPTH 12 vs GPT-2 124M, one GPU
    python benchmarks/generate.py --batches 1,8,32 --new-tokens 512
    python benchmarks/generate.py --tiny --device cpu          # seconds on a CPU (the smoke test)

Both models have random weights (nothing is downloaded) and the same shape: DEPTH 12 is 12
layers, 12 heads, width 768 — GPT-2 small, 124M parameters in GPT-2's layout (this GPT unties
its head and has a slightly larger vocabulary for the chat tokens). Both get the same random
prompt ids and the same lengths, decode greedily (so every row runs to its length; no stop
tokens), and on a GPU both hold bf16 weights (``--weights``) with SDPA attention; the engine
replays its decode step as a CUDA graph, transformers' ``generate`` uses its own KV cache
(``--hf-cache dynamic`` by default, ``static`` for its preallocated one).

* **prefill**: the time to the first token of a ``--prefill-len`` (1,000) token prompt at batch 1
  (one ``generate`` call for one new token);
* **decode**: at each batch size in ``--batches``, generating ``--new-tokens`` from a
  ``--prompt-len`` prompt takes t(N), one token takes t(1); decode tokens/s is
  batch × (N − 1) / (t(N) − t(1)), so the prompt's prefill is not counted in either.

Each time is the median of ``--repeats`` calls after ``--warmup`` untimed ones, with the device
synchronised around each call. The table prints the versions and the hardware it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date

import torch

from nanogpt.config import ModelConfig
from nanogpt.engine import Engine
from nanogpt.model import GPT
from nanogpt.sampling import SamplingParams
from nanogpt.tokenizer import get_tokenizer

GREEDY = SamplingParams(temperature=0.0, top_k=None)
TINY = {"depth": 2, "width": 128, "heads": 2, "prefill_len": 64, "prompt_len": 16,
        "new_tokens": 12, "batches": "1,4", "repeats": 2, "warmup": 1, "tokenizer": "bytes"}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depth", type=int, default=12, help="layers (width 64 x depth unless --width)")
    p.add_argument("--width", type=int, default=None, help="residual width (default 64 x depth)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default width / 64)")
    p.add_argument("--prefill-len", type=int, default=1000, help="prompt tokens of the prefill timing")  # fmt: skip
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens of the decode timing")  # fmt: skip
    p.add_argument("--new-tokens", type=int, default=256, help="tokens generated per row in the decode timing")  # fmt: skip
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes of the decode timing")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (the median is kept)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (CUDA graphs, allocator, cuBLAS)")  # fmt: skip
    p.add_argument("--weights", choices=["bf16", "fp32"], default=None, help="weight dtype of both models (default: bf16 on a GPU, fp32 on a CPU)")  # fmt: skip
    p.add_argument("--hf-cache", choices=["dynamic", "static"], default="dynamic", help="transformers' KV cache kind")  # fmt: skip
    p.add_argument("--no-hf", action="store_true", help="measure the engine alone (no transformers)")  # fmt: skip
    p.add_argument("--tokenizer", choices=["gpt2", "bytes"], default="gpt2", help="vocabulary of both models: GPT-2's (50,259 with the chat tokens; HF 50,257) or bytes (259)")  # fmt: skip
    p.add_argument("--tiny", action="store_true", help=f"tiny settings for a CPU smoke run: {TINY}")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    args.width = args.width or 64 * args.depth
    args.heads = args.heads or max(1, args.width // 64)
    try:
        args.batch_sizes = [int(b) for b in str(args.batches).split(",")]
    except ValueError:
        p.error(f"--batches must be comma-separated whole numbers, got {args.batches!r}")
    if any(b < 1 for b in args.batch_sizes) or min(args.new_tokens, args.prompt_len, args.prefill_len, args.repeats) < 1:  # fmt: skip
        p.error("batch sizes, lengths and --repeats must be >= 1")
    if args.new_tokens < 2:
        p.error("--new-tokens must be >= 2 (decode is t(N) - t(1))")
    args.weights = args.weights or ("bf16" if args.device.startswith("cuda") else "fp32")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    call: Callable[[], object], device: torch.device, repeats: int, warmup: int
) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cast_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Parameters to ``dtype``; buffers (the rotary tables) stay fp32, as load_model does for
    the chat CLI and server on a GPU."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    return model


class NanoGPTRunner:
    name = "nanogpt engine"

    def __init__(self, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
        longest = max(args.prefill_len + 1, args.prompt_len + args.new_tokens)
        cfg = ModelConfig(n_layer=args.depth, n_head=args.heads, n_embd=args.width,
                          vocab_size=get_tokenizer(args.tokenizer).n_vocab,
                          sequence_len=max(1024, longest))  # fmt: skip
        model = cast_weights(GPT(cfg).to(device), dtype).eval()
        self.params = sum(p.numel() for p in model.parameters())
        self.engine = Engine(model, get_tokenizer(args.tokenizer), dtype=torch.bfloat16 if dtype == torch.bfloat16 else None)  # fmt: skip

    def generate(self, ids: torch.Tensor, new_tokens: int) -> None:
        out = self.engine.generate_batch(ids.tolist(), new_tokens, GREEDY, stop_tokens=[])
        assert all(len(row) == new_tokens for row in out)


class HFRunner:
    name = "transformers GPT-2"

    def __init__(self, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        longest = max(args.prefill_len + 1, args.prompt_len + args.new_tokens)
        vocab = 50257 if args.tokenizer == "gpt2" else get_tokenizer("bytes").n_vocab
        cfg = GPT2Config(n_layer=args.depth, n_head=args.heads, n_embd=args.width, vocab_size=vocab,
                         n_positions=max(1024, longest), attn_implementation="sdpa")  # fmt: skip
        torch.manual_seed(0)
        self.model = GPT2LMHeadModel(cfg).to(device=device, dtype=dtype).eval()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.cache = args.hf_cache

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, new_tokens: int) -> None:
        ids = ids.to(self.model.device)
        extra = {"cache_implementation": "static"} if self.cache == "static" else {}
        out = self.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0, **extra,
        )  # fmt: skip
        assert out.shape[1] == ids.shape[1] + new_tokens


def measure(runner, args: argparse.Namespace, device: torch.device) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    vocab = 50257 if args.tokenizer == "gpt2" else 256  # ids both models and tokenizers know
    rows = []
    prefill_ids = torch.randint(0, vocab, (1, args.prefill_len), generator=gen)
    t_prefill = median_time(lambda: runner.generate(prefill_ids, 1), device, args.repeats, args.warmup)  # fmt: skip
    for batch in args.batch_sizes:
        ids = torch.randint(0, vocab, (batch, args.prompt_len), generator=gen)
        t_one = median_time(lambda ids=ids: runner.generate(ids, 1), device, args.repeats, args.warmup)  # fmt: skip
        t_all = median_time(lambda ids=ids: runner.generate(ids, args.new_tokens), device, args.repeats, args.warmup)  # fmt: skip
        decode_s = max(t_all - t_one, 1e-9)
        rows.append({
            "implementation": runner.name, "params": runner.params, "batch": batch,
            "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
            "decode_tokens_per_s": batch * (args.new_tokens - 1) / decode_s,
            "decode_ms_per_step": 1000 * decode_s / (args.new_tokens - 1),
            "prefill_len": args.prefill_len, "prefill_ms": 1000 * t_prefill,
        })  # fmt: skip
    return rows


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.weights == "bf16" else torch.float32
    versions = f"torch {torch.__version__}"
    runners = [NanoGPTRunner(args, device, dtype)]
    if not args.no_hf:
        import transformers

        versions += f", transformers {transformers.__version__}"
        runners.append(HFRunner(args, device, dtype))
    print(f"# generation, {date.today()}: {hardware(device)}; {versions}; weights {args.weights}; "
          f"DEPTH {args.depth} (width {args.width}, {args.heads} heads); greedy; median of "
          f"{args.repeats} after {args.warmup} warm-up; HF cache {args.hf_cache}", flush=True)  # fmt: skip
    rows = []
    for runner in runners:
        rows += measure(runner, args, device)
        print(f"measured: {runner.name}", flush=True)
    print(f"\n| implementation | params | batch | decode tokens/s | ms per step | "
          f"prefill {args.prefill_len} tokens (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['implementation']} | {r['params'] / 1e6:.1f}M | {r['batch']} | "
              f"{r['decode_tokens_per_s']:,.0f} | {r['decode_ms_per_step']:.2f} | "
              f"{r['prefill_ms']:.1f} |")  # fmt: skip
    if len(runners) == 2:
        ours = {r["batch"]: r for r in rows if r["implementation"] == NanoGPTRunner.name}
        theirs = {r["batch"]: r for r in rows if r["implementation"] == HFRunner.name}
        for batch in args.batch_sizes:
            ratio = ours[batch]["decode_tokens_per_s"] / theirs[batch]["decode_tokens_per_s"]
            print(f"decode at batch {batch}: the engine is {ratio:.2f}x transformers")
        prefill = (
            theirs[args.batch_sizes[0]]["prefill_ms"] / ours[args.batch_sizes[0]]["prefill_ms"]
        )
        print(f"prefill of {args.prefill_len} tokens: the engine is {prefill:.2f}x as fast")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()}, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
