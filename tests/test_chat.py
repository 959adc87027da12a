"""The chat CLI, driven as a real process through a pseudo-terminal (pexpect), on tiny random
checkpoints written by the real saver; and its session logic in process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from chat_fixtures import write_checkpoint

from nanogpt.chat import ChatSession, main, make_params, parse_args
from nanogpt.engine import Engine, load_model, prompt_format, resolve_compile

pexpect = pytest.importorskip("pexpect")
ROOT = Path(__file__).resolve().parents[1]


def spawn_chat(*args: str, timeout: float = 120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    child = pexpect.spawn(
        sys.executable, ["-m", "nanogpt.chat", *args], cwd=str(ROOT), env=env,
        encoding="utf-8", timeout=timeout,
    )  # fmt: skip
    return child


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_ctrl_c_stops_a_reply_and_the_program_goes_on(tmp_path):
    path = write_checkpoint(tmp_path, never_stop=True, seq=4096)
    child = spawn_chat("--checkpoint", str(path), "--max-tokens", "4000")
    try:
        child.expect("format chat: <\\|im_start\\|>role")
        child.expect("temperature 0.9, top-k 200")
        child.expect_exact("you> ")
        child.sendline("hello")
        child.expect_exact("model> ")
        child.expect("[ -~]{8}")  # streamed text is arriving
        child.sendintr()  # Ctrl-C: SIGINT through the terminal, as a user sends it
        child.expect_exact("[stopped]")
        child.expect_exact("you> ")
        child.sendline("/temperature 0")
        child.expect_exact("(temperature 0)")
        child.sendline("/topk 3")
        child.expect_exact("(top-k 3)")
        child.sendline("/clear")
        child.expect_exact("(conversation cleared)")
        child.sendintr()  # Ctrl-C at the prompt does not leave either
        child.expect_exact("/quit or Ctrl-D leaves")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


@pytest.mark.slow  # three process start-ups, ~45 s on 2 shared cores
def test_a_base_model_continues_raw_text_and_the_format_can_be_forced(tmp_path):
    path = write_checkpoint(tmp_path, mode="pretraining")
    script = "Once upon a time\n/quit\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "nanogpt.chat", "--checkpoint", str(path), "--max-tokens", "8"]
    raw = subprocess.run(cmd, input=script, capture_output=True, text=True, env=env, timeout=120)
    assert raw.returncode == 0, raw.stderr
    assert "format raw: a base model" in raw.stdout and "text> model> " in raw.stdout
    forced = subprocess.run(
        [*cmd, "--format", "chat", "--temperature", "0", "--top-k", "0"],
        input=script, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "format chat:" in forced.stdout and "temperature 0, top-k all" in forced.stdout
    bad = subprocess.run([*cmd, "--temperature", "3"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "temperature must be between 0 and 2" in bad.stderr


def session(tmp_path, fmt: str = "chat", max_tokens: int = 40, seq: int = 256) -> ChatSession:
    model, tok, meta = load_model(str(write_checkpoint(tmp_path, seq=seq)))
    assert prompt_format(meta) == "chat"
    return ChatSession(Engine(model, tok), fmt, make_params(0.0, 0, None, None), max_tokens)


def test_the_chat_keeps_turns_and_drops_the_oldest_when_the_context_fills(tmp_path):
    chat = session(tmp_path, max_tokens=40, seq=256)
    out = io.StringIO()
    first = chat.reply("a" * 60, out)
    assert out.getvalue() == first + "\n"
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    for _ in range(4):  # each turn is ~60 + up to 40 tokens: the context (256) overflows
        chat.reply("b" * 60, io.StringIO())
    tokens = chat.engine.tokenizer.render_for_completion(chat.messages[:-1])
    assert len(tokens) <= 256 - 16
    assert chat.messages[-2]["content"] == "b" * 60
    assert len(chat.messages) < 10  # the oldest turns went
    with pytest.raises(ValueError, match="context is 256"):
        chat.reply("c" * 300, io.StringIO())


def test_commands_change_the_sampling_and_report_bad_values(tmp_path):
    chat = session(tmp_path)
    assert chat.command("/temperature 1.5") == "(temperature 1.5)"
    assert chat.params.temperature == 1.5
    assert "between 0 and 2" in chat.command("/temperature 2.5")
    assert chat.params.temperature == 1.5
    assert chat.command("/topk 0") == "(top-k all)" and chat.params.top_k is None
    assert "whole number" in chat.command("/topk -3")
    assert "unknown command" in chat.command("/nope")
    assert chat.command("/quit") is None
    chat.messages = [{"role": "user", "content": "x"}]
    chat.command("/clear")
    assert chat.messages == []


def test_compile_flags_parse_auto_by_default_and_stay_compatible():
    def compile_of(*flags: str) -> str:
        return parse_args(["--checkpoint", "x", *flags]).compile

    assert compile_of() == "auto"
    assert compile_of("--compile") == "true"  # the old bare flag still means on
    assert compile_of("--compile", "false") == compile_of("--no-compile") == "false"
    assert compile_of("--compile", "TRUE") == "true" and compile_of("--compile=auto") == "auto"
    with pytest.raises(SystemExit):
        compile_of("--compile", "maybe")


def test_auto_compiles_on_cuda_only():
    assert resolve_compile("auto", "cpu") is False and resolve_compile("auto", "mps") is False
    assert resolve_compile("auto", "cuda") is True and resolve_compile("auto", "cuda:1") is True
    assert resolve_compile("auto", torch.device("cuda", 0)) is True  # a device, no GPU needed
    assert resolve_compile("true", "cpu") is True and resolve_compile("false", "cuda") is False
    assert resolve_compile(True, "cpu") is True and resolve_compile(False, "cuda:0") is False
    with pytest.raises(ValueError, match="auto, true, false"):
        resolve_compile("yes", "cpu")


def test_the_cli_says_when_it_compiles(tmp_path, monkeypatch, capsys):
    ckpt = str(write_checkpoint(tmp_path))

    def no_input(prompt: str = "") -> str:
        raise EOFError  # Ctrl-D at the first prompt

    monkeypatch.setattr("builtins.input", no_input)
    assert main(["--checkpoint", ckpt, "--device", "cpu"]) == 0
    assert "compiling the decode step" not in capsys.readouterr().out  # auto: off on a CPU
    assert main(["--checkpoint", ckpt, "--device", "cpu", "--compile"]) == 0  # lazily compiled
    assert "compiling the decode step (the first reply takes ~15 s" in capsys.readouterr().out
