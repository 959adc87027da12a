"""Generation speed: nanogpt's engine beside Hugging Face transformers' GPT-2, in one run.

    python -m benchmarks.generate                              # DEPTH 12 vs GPT-2 124M, one GPU
    python -m benchmarks.generate --compile --prefill-ab       # + compiled decode, old prefill
    python -m benchmarks.generate --batches 1,8,32 --new-tokens 512
    python -m benchmarks.generate --tiny --device cpu          # seconds on a CPU (the smoke test)

Both models have random weights (nothing is downloaded) and the same shape: DEPTH 12 is 12
layers, 12 heads, width 768 — GPT-2 small, 124M parameters in GPT-2's layout (this GPT unties
its head and has a slightly larger vocabulary for the chat tokens). Both get the same random
prompt ids and the same lengths, decode greedily (so every row runs to its length; no stop
tokens), and on a GPU both hold bf16 weights (``--weights``) with SDPA attention; the engine
replays its decode step as a CUDA graph, transformers' ``generate`` uses its own KV cache
(``--hf-cache dynamic`` by default, ``static`` for its preallocated one).

* **prefill**: the time to the first token of a ``--prefill-len`` (1,000) token prompt at batch 1:
  one ``generate`` call for one new token, the same call for both;
* **decode**: at each batch size in ``--batches``, generating ``--new-tokens`` from a
  ``--prompt-len`` prompt takes t(N), one token takes t(1); decode tokens/s is
  batch × (N − 1) / (t(N) − t(1)), so the prompt's prefill is not counted in either.

Variants of the engine, each its own rows: ``--compile`` adds the engine with its decode step
compiled by torch.compile (inside the same CUDA graph; on a GPU also without the graph);
``--prefill-ab`` adds the old prefill (masked attention over the whole preallocated cache) and
the model's bare forward pass over the prompt (no engine, no cache: the floor of the prefill).

Each time is the median of ``--repeats`` calls after ``--warmup`` untimed ones, with the device
synchronised around each call. The engine keeps a cache, a CUDA graph and a compiled step per
(batch, length) shape, so the warm-up pays allocation, capture and compilation once, as a
server pays them on its first request of that shape; the first warm-up call's time is printed.
A variant that fails prints its error, the others still run, and the exit status is 1. The
output starts with the versions and the hardware.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
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
ENGINE = "nanogpt engine"
HF = "transformers GPT-2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.generate",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:N or cpu (default: cuda if there is one)")  # fmt: skip
    p.add_argument("--depth", type=int, default=12, help="layers (width 64 x depth unless --width)")
    p.add_argument("--width", type=int, default=None, help="residual width (default 64 x depth)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default width / 64)")
    p.add_argument("--prefill-len", type=int, default=1000, help="prompt tokens of the prefill timing")  # fmt: skip
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens of the decode timing")  # fmt: skip
    p.add_argument("--new-tokens", type=int, default=256, help="tokens generated per row in the decode timing")  # fmt: skip
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes of the decode timing")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (the median is kept)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (allocation, CUDA graphs, compilation, cuBLAS)")  # fmt: skip
    p.add_argument("--weights", choices=["bf16", "fp32"], default=None, help="weight dtype of both models (default: bf16 on a GPU, fp32 on a CPU)")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="also measure the engine with its decode step compiled (torch.compile, dynamic=False)")  # fmt: skip
    p.add_argument("--prefill-ab", action="store_true", help="also time the old prefill (masked attention over the whole cache) and the model's bare forward over the prompt")  # fmt: skip
    p.add_argument("--no-graphs", action="store_true", help="the engine decodes without CUDA graphs")  # fmt: skip
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


def timed(call: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def median_time(
    call: Callable[[], object], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float | None]:
    """The median of ``repeats`` timed calls, and the first warm-up call's time (or None)."""
    first = timed(call, device) if warmup > 0 else None
    for _ in range(warmup - 1):
        call()
    return statistics.median(timed(call, device) for _ in range(repeats)), first


def cast_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Parameters to ``dtype``; buffers (the rotary tables) stay fp32, as load_model does for
    the chat CLI and server on a GPU."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    return model


def longest(args: argparse.Namespace) -> int:
    return max(args.prefill_len + 1, args.prompt_len + args.new_tokens)


def build_gpt(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> GPT:
    cfg = ModelConfig(n_layer=args.depth, n_head=args.heads, n_embd=args.width,
                      vocab_size=get_tokenizer(args.tokenizer).n_vocab,
                      sequence_len=max(1024, longest(args)))  # fmt: skip
    torch.manual_seed(0)
    return cast_weights(GPT(cfg).to(device), dtype).eval()


class NanoGPTRunner:
    def __init__(self, name: str, model: GPT, args: argparse.Namespace, **engine_options) -> None:
        self.name = name
        self.params = sum(p.numel() for p in model.parameters())
        dtype = next(model.parameters()).dtype
        self.engine = Engine(model, get_tokenizer(args.tokenizer),
                             dtype=torch.bfloat16 if dtype == torch.bfloat16 else None,
                             cuda_graphs=not args.no_graphs, **engine_options)  # fmt: skip

    def generate(self, ids: torch.Tensor, new_tokens: int) -> None:
        out = self.engine.generate_batch(ids.tolist(), new_tokens, GREEDY, stop_tokens=[])
        assert all(len(row) == new_tokens for row in out)


class ForwardRunner:
    """The model's bare forward over the prompt (last position's logits): prefill's floor."""

    def __init__(self, name: str, engine: Engine) -> None:
        self.name, self.engine = name, engine
        self.params = sum(p.numel() for p in engine.model.parameters())

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, new_tokens: int) -> None:
        self.engine._forward(ids.to(self.engine.device), None).argmax(-1)


class HFRunner:
    name = HF

    def __init__(self, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        vocab = 50257 if args.tokenizer == "gpt2" else get_tokenizer("bytes").n_vocab
        cfg = GPT2Config(n_layer=args.depth, n_head=args.heads, n_embd=args.width, vocab_size=vocab,
                         n_positions=max(1024, longest(args)), attn_implementation="sdpa")  # fmt: skip
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


def prompts(args: argparse.Namespace) -> dict:
    """The same random ids for every implementation: the prefill prompt and one per batch."""
    gen = torch.Generator().manual_seed(0)
    vocab = 50257 if args.tokenizer == "gpt2" else 256  # ids both models and tokenizers know
    return {
        "prefill": torch.randint(0, vocab, (1, args.prefill_len), generator=gen),
        **{b: torch.randint(0, vocab, (b, args.prompt_len), generator=gen) for b in args.batch_sizes},
    }  # fmt: skip


def measure_prefill(runner, args, device, ids: dict) -> dict:
    t, first = median_time(lambda: runner.generate(ids["prefill"], 1), device, args.repeats, args.warmup)  # fmt: skip
    return {"measure": "prefill", "implementation": runner.name, "params": runner.params,
            "batch": 1, "prefill_len": args.prefill_len, "prefill_ms": 1000 * t,
            "first_call_s": first}  # fmt: skip


def measure_decode(runner, args, device, ids: dict, batch: int) -> dict:
    x = ids[batch]
    t_one, _ = median_time(lambda: runner.generate(x, 1), device, args.repeats, args.warmup)
    t_all, first = median_time(lambda: runner.generate(x, args.new_tokens), device, args.repeats, args.warmup)  # fmt: skip
    decode_s = max(t_all - t_one, 1e-9)
    return {"measure": "decode", "implementation": runner.name, "params": runner.params,
            "batch": batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
            "decode_tokens_per_s": batch * (args.new_tokens - 1) / decode_s,
            "decode_ms_per_step": 1000 * decode_s / (args.new_tokens - 1),
            "first_call_s": first}  # fmt: skip


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def attempt(rows: list[dict], name: str, work: Callable[[], dict]) -> None:
    """Run one measurement; a failure is printed and recorded, and the run goes on."""
    try:
        rows.append(work())
    except Exception as e:  # a variant (compile, transformers) may fail where the rest runs
        traceback.print_exc(file=sys.stderr)
        print(f"FAILED: {name}: {type(e).__name__}: {e}", flush=True)
        rows.append({"implementation": name, "error": f"{type(e).__name__}: {e}"})


def build_runners(args, device: torch.device, dtype: torch.dtype) -> tuple[list, list]:
    """(prefill runners, decode runners) of the variants asked for."""
    model = build_gpt(args, device, dtype)
    engine = NanoGPTRunner(ENGINE, model, args)
    prefill, decode = [engine], [engine]
    if args.prefill_ab:
        prefill.append(NanoGPTRunner(f"{ENGINE}, old prefill", model, args, causal_prefill=False))
        prefill.append(ForwardRunner("nanogpt model forward alone", engine.engine))
    if not args.no_hf:
        hf = HFRunner(args, device, dtype)
        prefill.append(hf)
        decode.append(hf)
    # The compiled variants come last: the slowest to warm up, so a run cut short by a time
    # limit has the engine and transformers rows already printed.
    if args.compile:
        decode.append(NanoGPTRunner(f"{ENGINE} + compile", model, args, compile=True))
        if device.type == "cuda" and not args.no_graphs:  # what the graph adds, or a fallback
            plain = argparse.Namespace(**{**vars(args), "no_graphs": True})
            decode.append(NanoGPTRunner(f"{ENGINE} + compile, no graphs", model, plain, compile=True))  # fmt: skip
    return prefill, decode


def progress(row: dict) -> str:
    """One line per measurement as it is made, so a run cut short keeps what it measured."""
    if "error" in row:
        return f"measured: {row['implementation']}: failed"
    first = f"first call {row['first_call_s'] or 0:.2f} s"
    if row["measure"] == "prefill":
        return f"measured prefill: {row['implementation']}: {row['prefill_ms']:.2f} ms ({first})"
    return (f"measured decode: {row['implementation']}, batch {row['batch']}: "
            f"{row['decode_tokens_per_s']:,.0f} tokens/s, {row['decode_ms_per_step']:.2f} ms "
            f"per step ({first})")  # fmt: skip


def print_tables(rows: list[dict], args: argparse.Namespace) -> None:
    ok = [r for r in rows if "error" not in r]
    hf = {(r["measure"], r["batch"]): r for r in ok if r["implementation"] == HF}
    print(f"\n| implementation | params | prefill {args.prefill_len} tokens (ms) | "
          "transformers / this | first call (s) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in (r for r in ok if r["measure"] == "prefill"):
        ref = hf.get(("prefill", 1))
        ratio = f"{ref['prefill_ms'] / r['prefill_ms']:.2f}x" if ref else "-"
        print(f"| {r['implementation']} | {r['params'] / 1e6:.1f}M | {r['prefill_ms']:.2f} | "
              f"{ratio} | {r['first_call_s'] or 0:.2f} |")  # fmt: skip
    print("\n| implementation | params | batch | decode tokens/s | ms per step | "
          "this / transformers | first call (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in sorted((r for r in ok if r["measure"] == "decode"), key=lambda r: r["batch"]):
        ref = hf.get(("decode", r["batch"]))
        ratio = f"{r['decode_tokens_per_s'] / ref['decode_tokens_per_s']:.2f}x" if ref else "-"
        print(f"| {r['implementation']} | {r['params'] / 1e6:.1f}M | {r['batch']} | "
              f"{r['decode_tokens_per_s']:,.0f} | {r['decode_ms_per_step']:.2f} | {ratio} | "
              f"{r['first_call_s'] or 0:.2f} |")  # fmt: skip
    print()
    for r in ok:
        if r["implementation"] == HF or (r["measure"], r["batch"]) not in hf:
            continue
        ref = hf[(r["measure"], r["batch"])]
        if r["measure"] == "decode":
            ratio = r["decode_tokens_per_s"] / ref["decode_tokens_per_s"]
            print(f"decode at batch {r['batch']}: {r['implementation']} is {ratio:.2f}x transformers")  # fmt: skip
        else:
            ratio = ref["prefill_ms"] / r["prefill_ms"]
            print(f"prefill of {args.prefill_len} tokens: {r['implementation']} is {ratio:.2f}x as fast as transformers")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"failed: {r['implementation']}: {r['error']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.weights == "bf16" else torch.float32
    versions = f"torch {torch.__version__}"
    if not args.no_hf:
        import transformers

        versions += f", transformers {transformers.__version__}"
    print(f"# generation, {date.today()}: {hardware(device)}; {versions}; weights {args.weights}; "
          f"DEPTH {args.depth} (width {args.width}, {args.heads} heads); greedy; median of "
          f"{args.repeats} after {args.warmup} warm-up; HF cache {args.hf_cache}; CUDA graphs "
          f"{'off' if args.no_graphs or device.type != 'cuda' else 'on'}", flush=True)  # fmt: skip
    prefill_runners, decode_runners = build_runners(args, device, dtype)
    ids = prompts(args)
    rows: list[dict] = []
    for runner in prefill_runners:
        attempt(rows, runner.name, lambda r=runner: measure_prefill(r, args, device, ids))
        print(progress(rows[-1]), flush=True)
    for runner in decode_runners:
        for batch in args.batch_sizes:
            attempt(rows, runner.name, lambda r=runner, b=batch: measure_decode(r, args, device, ids, b))  # fmt: skip
            print(progress(rows[-1]), flush=True)
    print_tables(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
