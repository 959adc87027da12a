"""A real uvicorn server on a free loopback port, and an engine whose tokens wait for permits."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from nanogpt.engine import Engine


class GatedEngine(Engine):
    """The real engine, except that each token waits for a permit the test hands out, so a
    test decides exactly how far a generation gets (no timing windows)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.permits = threading.Semaphore(0)
        self.started = threading.Event()
        self.produced = 0
        self.prompts: list[list[int]] = []

    def generate(self, prompts, max_new_tokens, params=None, stop_tokens=None, use_cache=True):
        self.prompts.append(list(prompts[0]))
        self.started.set()
        for step in super().generate(prompts, max_new_tokens, params, stop_tokens, use_cache):
            if not self.permits.acquire(timeout=120):
                raise TimeoutError("the test handed out no permit for 120 s")
            self.produced += 1
            yield step


@contextlib.contextmanager
def running_server(app, startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1:<free port>; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of a text/event-stream's ``data:`` lines."""
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])
