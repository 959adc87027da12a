"""A web chat over a checkpoint: ``python -m nanogpt.serve --checkpoint PATH``.

FastAPI under uvicorn, on 127.0.0.1:8003 unless told otherwise.

* ``GET /`` the chat page (``nanogpt/static/chat.html``);
* ``GET /health`` ``{"status": "ok", "checkpoint", "device", "format", ...}`` and the workers'
  load (busy, queued, served, cancelled); ``"status": "warming"`` while the start-up warm-up
  runs (``"warmup"`` says how it went);
* ``POST /chat/completions`` ``{"messages": [{"role", "content"}], "temperature", "top_k",
  "top_p", "max_tokens", "seed"}`` answers with server-sent events: ``data: {"token": "..."}``
  per piece of text, then ``data: {"done": true, "finish_reason", "tokens", ...}``.

Generation never runs on the event loop: each worker thread owns one engine (one per GPU, or
one on the CPU) and takes requests from one queue, so a long reply never holds up ``/health``
or the other clients. When a client goes away (the page's stop button aborts its request) the
response's generator is cancelled, which sets the job's cancel flag; the worker checks it
before every token and moves on to the next request. Requests are checked against
:class:`Limits` before they are queued; a bad one is a 400 that names the field.

The decode step is compiled on CUDA by default (``--compile auto``). Compiling one shape takes
~15 s, so when an engine compiles the app warms up at start-up, in a background thread started
by the lifespan: each engine generates two tokens at batch 1 for each cache length a request
most likely uses (the first length bucket and the bucket of a short prompt with the default
``max_tokens``). ``/health`` answers all along, with ``"status": "warming"`` until it is done;
requests that arrive meanwhile wait in the queue. The log says how long the warm-up took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from nanogpt.chat import add_compile_flags
from nanogpt.engine import (
    LENGTH_BUCKET,
    PROMPT_FORMATS,
    Engine,
    TextStream,
    prompt_format,
    render_prompt,
    resolve_compile,
)
from nanogpt.sampling import MAX_TEMPERATURE, SamplingParams
from nanogpt.tokenizer import CHAT_ROLES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8003
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything beyond is a 400 naming the field."""

    max_messages: int = 500  # messages in one conversation
    max_message_chars: int = 8000  # characters in one message
    max_total_chars: int = 32000  # characters in all messages together
    max_tokens: int = 4096  # the largest max_tokens (the model's context also bounds it)
    max_top_k: int = 1000  # the largest top_k
    max_queued: int = 64  # requests waiting for a worker before new ones get a 503


DEFAULTS = {"temperature": 0.9, "top_k": 200, "top_p": None, "max_tokens": 512, "seed": None}
REQUEST_FIELDS = {"messages", "stream", *DEFAULTS}


class RequestError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class ChatRequest:
    prompt: list[int]
    params: SamplingParams
    max_tokens: int


def _number(body: dict, name: str, low: float, high: float) -> float:
    value = body.get(name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(name, f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise RequestError(name, f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _whole(body: dict, name: str, low: int, high: int) -> int:
    value = body.get(name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise RequestError(name, f"{name} must be between {low} and {high}, got {value}")
    return value


def _messages(body: dict, limits: Limits) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages", "messages must be a non-empty list of {role, content}")
    if len(messages) > limits.max_messages:
        raise RequestError(
            "messages", f"{len(messages)} messages; at most {limits.max_messages} are allowed"
        )
    total = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"}:
            raise RequestError(f"messages[{i}]", f"messages[{i}] must be {{role, content}} only")
        role, content = m.get("role"), m.get("content")
        if role not in CHAT_ROLES:
            raise RequestError(
                f"messages[{i}].role",
                f"messages[{i}].role is {role!r}; it must be one of {', '.join(CHAT_ROLES)}",
            )
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content", f"messages[{i}].content must be text")
        if len(content) > limits.max_message_chars:
            raise RequestError(
                f"messages[{i}].content",
                f"messages[{i}].content has {len(content)} characters; "
                f"at most {limits.max_message_chars} are allowed",
            )
        total += len(content)
    if total > limits.max_total_chars:
        raise RequestError(
            "messages",
            f"the messages have {total} characters in all; at most {limits.max_total_chars}",
        )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def parse_chat_request(body: Any, engine: Engine, fmt: str, limits: Limits) -> ChatRequest:
    """Check a /chat/completions body against the limits and render its prompt.

    Message text is encoded as ordinary text (the tokenizer's ``encode`` never parses special
    tokens), so ``<|im_end|>`` typed by a user stays characters and cannot end a turn.
    """
    if not isinstance(body, dict):
        raise RequestError("body", "the request body must be a JSON object")
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise RequestError(
            unknown[0], f"unknown field {unknown[0]!r}; known: {', '.join(sorted(REQUEST_FIELDS))}"
        )
    messages = _messages(body, limits)
    temperature = _number(body, "temperature", 0.0, MAX_TEMPERATURE)
    top_k = _whole(
        {"top_k": min(DEFAULTS["top_k"], limits.max_top_k), **body}, "top_k", 1, limits.max_top_k
    )
    top_p = body.get("top_p")
    if top_p is not None:
        top_p = _number(body, "top_p", 0.0, 1.0)
        if top_p == 0:
            raise RequestError("top_p", "top_p must be above 0 (or null for all tokens)")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed", f"seed must be a whole number or null, got {seed!r}")
    context = engine.model.config.sequence_len
    prompt = render_prompt(engine.tokenizer, messages, fmt)
    if "max_tokens" in body:
        max_tokens = _whole(body, "max_tokens", 1, min(limits.max_tokens, context - 1))
    else:  # the default, as much of it as the context leaves room for
        max_tokens = max(1, min(DEFAULTS["max_tokens"], limits.max_tokens, context - len(prompt)))
    if len(prompt) >= context:
        raise RequestError(
            "messages",
            f"the conversation is {len(prompt)} tokens; the model's context is {context}: "
            "drop earlier messages",
        )
    if len(prompt) + max_tokens > context:
        raise RequestError(
            "max_tokens",
            f"the conversation is {len(prompt)} tokens and max_tokens is {max_tokens}, more "
            f"than the model's context ({context}): ask for at most "
            f"{context - len(prompt)} tokens or drop earlier messages",
        )
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return ChatRequest(prompt, params, max_tokens)


@dataclass
class Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: dict) -> None:
        """Called from a worker thread: hand an event to the request's coroutine."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class QueueFull(RuntimeError):
    pass


def _use_device(engine: Engine) -> None:
    """Make the engine's GPU this thread's current device: a new thread starts on cuda:0, and
    the CUDA-graph capture and replay run on the current device's streams."""
    if engine.device.type == "cuda":
        import torch

        torch.cuda.set_device(engine.device)


class WorkerPool:
    """One thread per engine, all taking jobs from one queue."""

    def __init__(self, engines: Sequence[Engine], max_queued: int) -> None:
        if not engines:
            raise ValueError("the pool needs at least one engine")
        self.engines = list(engines)
        self.max_queued = max_queued
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self.busy = self.served = self.cancelled = 0
        self._stopping = threading.Event()  # set at shutdown: running generations end
        # A worker holds its engine's lock while it serves a job; the warm-up holds it until
        # that engine is warm, so a request that arrives meanwhile waits instead of compiling.
        self._engine_locks = [threading.Lock() for _ in self.engines]
        self.warmup: dict[str, Any] = {"state": "off"}
        self.threads = [
            threading.Thread(
                target=self._work, args=(e, lock), name=f"nanogpt-worker-{i}", daemon=True
            )
            for i, (e, lock) in enumerate(zip(self.engines, self._engine_locks))
        ]
        for t in self.threads:
            t.start()

    def submit(self, job: Job) -> None:
        if self.jobs.qsize() >= self.max_queued:
            raise QueueFull(f"{self.jobs.qsize()} requests are waiting; try again shortly")
        self.jobs.put(job)

    @property
    def warming(self) -> bool:
        with self._lock:
            return self.warmup["state"] == "warming"

    def start_warmup(self, lengths: Sequence[int], log=print) -> threading.Thread:
        """Warm every engine up (:meth:`Engine.warm_up`, batch 1, each cache length) in one
        background thread, one engine after the other (torch.compile is not made for
        concurrent compiles); each engine takes jobs again as soon as it is warm."""
        for lock in self._engine_locks:  # taken here, so no job slips in before the warm-up
            lock.acquire()
        with self._lock:
            self.warmup = {"state": "warming", "lengths": list(lengths), "seconds": None}
        thread = threading.Thread(
            target=self._warm, args=(list(lengths), log), name="nanogpt-warmup", daemon=True
        )
        thread.start()
        return thread

    def _warm(self, lengths: list[int], log) -> None:
        start = time.perf_counter()
        errors: list[str] = []
        for engine, lock in zip(self.engines, self._engine_locks):
            try:
                for n in lengths:
                    if self._stopping.is_set():
                        break
                    _use_device(engine)
                    took = engine.warm_up(n)
                    log(f"warm-up: {engine.device}, batch 1, cache length {n}: {took:.1f} s")
            except Exception as e:  # the server still serves; the first request compiles
                errors.append(f"{engine.device}: {e}")
                log(f"warm-up failed on {engine.device}: {e}")
            finally:
                lock.release()
        seconds = round(time.perf_counter() - start, 2)
        with self._lock:
            self.warmup = {
                "state": "failed" if errors else "done", "lengths": lengths,
                "seconds": seconds, **({"errors": errors} if errors else {}),
            }  # fmt: skip
        log(f"warm-up {'failed' if errors else 'done'} in {seconds:.1f} s; serving")

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers": len(self.threads),
                "busy": self.busy,
                "queued": self.jobs.qsize(),
                "served": self.served,
                "cancelled": self.cancelled,
            }

    def close(self) -> None:
        self._stopping.set()
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join(timeout=30)

    def _count(self, name: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + delta)

    def _work(self, engine: Engine, lock: threading.Lock) -> None:
        _use_device(engine)
        while (job := self.jobs.get()) is not None:
            with lock:  # waits while this engine warms up
                if job.cancel.is_set():  # the client left while the job waited
                    self._count("cancelled")
                    continue
                self._count("busy")
                try:
                    reason = self._generate(engine, job)
                except Exception as e:  # a failed request must not take the worker down
                    job.emit({"error": f"generation failed: {e}"})
                    job.emit({"done": True, "finish_reason": "error"})
                    reason = "error"
                finally:
                    self._count("busy", -1)
                self._count("cancelled" if reason == "cancelled" else "served")

    def _generate(self, engine: Engine, job: Job) -> str:
        req = job.request
        stream = TextStream(engine.tokenizer)
        stops = set(engine.stop_tokens)
        start = time.perf_counter()
        reason, n_tokens = "length", 0
        steps = engine.generate([req.prompt], req.max_tokens, req.params)
        try:
            for (token,) in steps:
                if job.cancel.is_set() or self._stopping.is_set():
                    reason = "cancelled"
                    break
                if token is None or token in stops:
                    reason = "stop"
                    break
                n_tokens += 1
                piece = stream.push(token)
                if piece:
                    job.emit({"token": piece})
        finally:
            steps.close()  # frees the KV cache now, not at the next collection
        tail = stream.flush()
        if tail and reason != "cancelled":
            job.emit({"token": tail})
        elapsed = time.perf_counter() - start
        job.emit({
            "done": True, "finish_reason": reason, "tokens": n_tokens,
            "prompt_tokens": len(req.prompt), "elapsed_s": round(elapsed, 4),
            "tokens_per_s": round(n_tokens / elapsed, 2) if elapsed > 0 else None,
        })  # fmt: skip
        return reason


def page_html() -> str:
    return resources.files("nanogpt").joinpath("static/chat.html").read_text(encoding="utf-8")


def warmup_lengths(context: int, limits: Limits | None = None) -> list[int]:
    """The cache lengths the start-up warm-up compiles: the first length bucket, and the
    bucket a short prompt with the default ``max_tokens`` lands in (capped at the context)."""
    limits = limits or Limits()

    def bucket(n: int) -> int:
        return min(-(-n // LENGTH_BUCKET) * LENGTH_BUCKET, context)

    default_request = 1 + min(DEFAULTS["max_tokens"], limits.max_tokens)
    return sorted({bucket(1), bucket(min(context, default_request))})


def _server_info(engines: Sequence[Engine], meta: dict, fmt: str, limits: Limits) -> dict:
    """What ``/health`` says about the server besides its state: checkpoint, devices, limits."""
    engine = engines[0]
    context = engine.model.config.sequence_len
    return {
        "checkpoint": meta.get("path"),
        "step": meta.get("step"),
        "tokenizer": engine.tokenizer.name,
        "format": fmt,
        "device": ", ".join(str(e.device) for e in engines),
        "context": context,
        "limits": {**asdict(limits), "max_tokens": min(limits.max_tokens, context - 1)},
        "defaults": DEFAULTS,
    }


def create_app(
    engines: Sequence[Engine],
    meta: dict,
    fmt: str = "auto",
    limits: Limits | None = None,
    warmup: bool | None = None,
) -> FastAPI:
    """The FastAPI app over ready engines (one per worker); ``meta`` is the checkpoint's.

    ``warmup`` (default: when an engine compiles its decode step) has the lifespan start
    :meth:`WorkerPool.start_warmup` at :func:`warmup_lengths`; ``/health`` says "warming" until
    it is done."""
    limits = limits or Limits()
    fmt = prompt_format(meta, fmt)
    engine = engines[0]
    pool = WorkerPool(engines, limits.max_queued)
    if warmup is None:
        warmup = any(e.compile for e in engines)
    lengths = warmup_lengths(engine.model.config.sequence_len, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warmup:
            print(
                f"warm-up: compiling the decode step at batch 1, cache length(s) "
                f"{', '.join(map(str, lengths))} (~15 s a shape on a GPU); /health says "
                "'warming' until it is done",
                flush=True,
            )  # fmt: skip
            pool.start_warmup(lengths)
        yield
        pool.close()

    app = FastAPI(title="nanogpt chat", lifespan=lifespan)
    app.state.pool = pool
    info = _server_info(engines, meta, fmt, limits)

    def error(status: int, field_name: str, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "field": field_name}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/health")
    async def health() -> dict:
        warmup_state = dict(pool.warmup)
        status = "warming" if warmup_state["state"] == "warming" else "ok"
        return {"status": status, **info, **pool.stats(), "warmup": warmup_state}

    @app.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return error(400, "body", f"the request body is not valid JSON ({e})")
        try:
            parsed = parse_chat_request(body, engine, fmt, limits)
        except RequestError as e:
            return error(400, e.field, e.message)
        job = Job(parsed, asyncio.get_running_loop())
        try:
            pool.submit(job)
        except QueueFull as e:
            return error(503, "server", str(e))

        async def events() -> AsyncIterator[str]:
            try:
                while True:
                    event = await job.events.get()
                    yield f"data: {json.dumps(event)}\n\n"
                    if event.get("done"):
                        return
            finally:  # the reply ended, or the client closed the connection: free the worker
                job.cancel.set()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


def build_engines(
    checkpoint: str, devices: str = "auto", compile: str | bool = "auto"
) -> tuple[list[Engine], dict]:
    """One engine per device: every GPU for ``auto`` (the CPU without one), or a comma list;
    ``compile`` (auto|true|false, :func:`nanogpt.engine.resolve_compile` per device: auto = on
    for CUDA) compiles each engine's decode step."""
    import torch

    from nanogpt.engine import load_model

    if devices == "auto":
        n = torch.cuda.device_count()
        names = [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    else:
        names = [d.strip() for d in devices.split(",") if d.strip()]
    engines, meta = [], {}
    for name in names:
        weights = torch.bfloat16 if name.startswith("cuda") else None  # bf16 weights on a GPU
        model, tokenizer, meta = load_model(checkpoint, name, weights)
        engines.append(Engine(model, tokenizer, compile=resolve_compile(compile, name)))
    return engines, meta


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nanogpt.serve", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a step_NNNNNN directory or a run directory (its latest)")  # fmt: skip
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}, this machine only)")  # fmt: skip
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--devices", default="auto", help="worker devices, e.g. cuda:0,cuda:1 or cpu (default: every GPU, else the CPU)")  # fmt: skip
    p.add_argument("--format", choices=PROMPT_FORMATS, default="auto", help="chat turns or raw text continuation (default: chat for mid-trained checkpoints)")  # fmt: skip
    add_compile_flags(p, help="compile the decode step with torch.compile and capture it in the CUDA graph: auto (the default) = on for CUDA, off on a CPU or MPS; a bare --compile means true, --no-compile false. When on, the server warms up at start-up (~15 s a shape on an H200; /health says 'warming' meanwhile)")  # fmt: skip
    p.add_argument("--no-warmup", action="store_true", help="skip the start-up warm-up of a compiled decode step (the first request of each shape then waits for the compile)")  # fmt: skip
    d = Limits()
    p.add_argument("--max-messages", type=int, default=d.max_messages, help="messages per request")
    p.add_argument("--max-message-chars", type=int, default=d.max_message_chars, help="characters per message")  # fmt: skip
    p.add_argument("--max-total-chars", type=int, default=d.max_total_chars, help="characters per request")  # fmt: skip
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="the largest max_tokens a request may ask for")  # fmt: skip
    p.add_argument("--max-top-k", type=int, default=d.max_top_k, help="the largest top_k")
    p.add_argument("--max-queued", type=int, default=d.max_queued, help="waiting requests before new ones get 503")  # fmt: skip
    args = p.parse_args(argv)
    for name in ("max_messages", "max_message_chars", "max_total_chars", "max_tokens", "max_top_k", "max_queued"):  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.port < 65536:
        p.error(f"--port must be 1..65535, got {args.port}")
    return args


def prepare(argv: Sequence[str] | None = None) -> tuple[FastAPI, argparse.Namespace]:
    """Parse the command line, load the engines and build the app: ``(app, args)``."""
    args = parse_args(argv)
    limits = Limits(
        args.max_messages, args.max_message_chars, args.max_total_chars, args.max_tokens,
        args.max_top_k, args.max_queued,
    )  # fmt: skip
    if args.host not in LOOPBACK:
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine on port "
            f"{args.port} can use the model, and there is no authentication. Put it behind a "
            "reverse proxy with access control (docs/README_INFERENCE.md).",
            file=sys.stderr,
        )
    engines, meta = build_engines(args.checkpoint, args.devices, args.compile)
    app = create_app(engines, meta, args.format, limits, warmup=False if args.no_warmup else None)
    fmt = prompt_format(meta, args.format)
    print(
        f"nanogpt chat server: {meta['path']} ({fmt} format, {len(engines)} worker(s) on "
        f"{', '.join(str(e.device) for e in engines)}"
        f"{', decode step compiled' if any(e.compile for e in engines) else ''}) at "
        f"http://{args.host}:{args.port}/",
        flush=True,
    )
    return app, args


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    app, args = prepare(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
