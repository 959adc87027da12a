"""Run untrusted Python (a model's HumanEval completions) in a separate, fenced-in process.

A program passes only if it runs to its end: the trusted bootstrap that wraps it prints a
random marker after the program returns, so a program that crashes, raises, calls
``sys.exit`` or ``os._exit``, is killed by a limit or runs out of time is a failure.

The fences, outermost first:

* **namespaces** — the process starts under ``unshare --net --pid --fork``: a network
  namespace with only a loopback that is down (no route anywhere), and a PID namespace whose
  first process is the bootstrap, so every process the program might start dies with it. As
  an ordinary user the same is tried inside a user namespace (``--map-root-user``). Where the
  kernel refuses both, the program runs without them and :func:`isolation` says so (the
  caller puts that in its report);
* **a process group of its own** (a new session), killed whole (``SIGKILL``) on timeout;
* **resource limits** (``setrlimit``): CPU seconds, address space, file size, open files,
  processes and no core dumps; and, when started as root, the program runs as ``nobody``
  after the bootstrap has set up its directory, so the process limit counts and the rest of
  the file system is read-only to it (only where ``nobody`` can read the standard library: a
  Python installed under a private home, as pyenv in ``/root``, keeps root, and then the
  audit hook and the PID namespace are what stop writes and forks);
* **a temporary directory** as the working directory, deleted afterwards, and a scrubbed
  environment (``PATH``, ``HOME`` = that directory, ``LANG``; nothing else is inherited);
* **an audit hook** (PEP 578, which Python code cannot remove) refusing writes outside the
  directory, deleting or renaming files, new processes (``fork``, ``subprocess``, ``exec``,
  ``system``, ``posix_spawn``), signals to other processes, sockets, and loading native code
  through ``ctypes``.

This contains accidents and runaway code (loops, fork bombs, memory bombs, stray writes,
network calls). It is not a security boundary against a program written to escape: run
untrusted models' code on a machine you can throw away, as OpenAI's human-eval README asks.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """What one program may use."""

    timeout_s: float = 10.0  # wall-clock limit; the whole process group is killed past it
    cpu_s: int = 10  # RLIMIT_CPU
    memory_mb: int = 512  # RLIMIT_AS (address space)
    file_size_mb: int = 16  # RLIMIT_FSIZE: the largest file it may write (stdout included)
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 16  # RLIMIT_NPROC (counts only for an unprivileged user)
    output_chars: int = 4000  # how much of stdout/stderr the result keeps


@dataclass(frozen=True)
class RunResult:
    passed: bool
    status: str  # "passed", "failed" (ran and did not finish), "timeout", "killed:<signal>"
    returncode: int | None
    wall_s: float
    output: str  # the tail of stdout and stderr


# The bootstrap runs in the sandboxed interpreter before the untrusted code. It reads a JSON job
# from stdin, sets the limits, drops privileges, installs the audit hook and runs the program;
# it prints the marker only if the program returned.
_BOOTSTRAP = r"""
import json, os, resource, sys, traceback
job = json.loads(sys.stdin.read())
work = job["workdir"]
os.chdir(work)
MB = 1024 * 1024
for name, value in (
    ("RLIMIT_CPU", job["cpu_s"]), ("RLIMIT_AS", job["memory_mb"] * MB),
    ("RLIMIT_FSIZE", job["file_size_mb"] * MB), ("RLIMIT_NOFILE", job["open_files"]),
    ("RLIMIT_NPROC", job["processes"]), ("RLIMIT_CORE", 0),
):
    resource.setrlimit(getattr(resource, name), (value, value))
if job["drop_privileges"]:
    os.chown(work, 65534, 65534)
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)

def _guard():
    root = os.path.realpath(work) + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    refused = {
        "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__",
        "socket.connect", "socket.bind", "socket.getaddrinfo", "ctypes.dlopen", "os.remove",
        "os.rmdir", "os.rename", "os.link", "os.symlink", "os.chmod", "os.chown",
        "os.truncate", "shutil.rmtree", "os.setuid", "os.chdir", "os.chroot", "os.putenv",
        "os.unsetenv", "mmap.__new__",
    }
    realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith

    def inside(path):
        if isinstance(path, int):
            return True  # an fd the process already holds
        try:
            return startswith(realpath(fspath(path)) + os.sep, root)
        except Exception:
            return False

    def hook(event, args):
        if event in refused:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & write_flags
            )
            if writes and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside {work} is not allowed")
        elif event in ("os.mkdir", "os.makedirs") and not inside(args[0]):
            raise PermissionError(f"sandbox: creating {args[0]!r} outside {work} is not allowed")

    sys.addaudithook(hook)

program = job["program"]
marker = job.pop("marker")
del job
_guard()
scope = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compile(program, "<completion>", "exec"), scope)
except BaseException:
    sys.stdout.flush()
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(1)
sys.stdout.flush()
sys.stdout.write("\n" + marker + "\n")
sys.stdout.flush()
os._exit(0)
"""


def _try(cmd: list[str]) -> bool:
    try:
        done = subprocess.run(
            [*cmd, sys.executable, "-c", "pass"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def _namespace_prefix() -> tuple[str, ...]:
    """The ``unshare`` command line that works here, or () where the kernel refuses it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    base = [unshare, "--net", "--pid", "--fork", "--kill-child"]
    if os.geteuid() == 0 and _try(base):
        return tuple(base)
    as_user = [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
    if _try(as_user):
        return tuple(as_user)
    return ()


def isolation() -> dict[str, object]:
    """What fences this machine allows: ``network`` and ``pid`` namespaces, and a note when not."""
    ok = bool(_namespace_prefix())
    note = None
    if not ok:
        note = (
            "network namespace unavailable (unshare refused here): completions ran without "
            "network isolation; the audit hook still refuses sockets"
        )
    return {"network_namespace": ok, "pid_namespace": ok, "note": note}


@functools.cache
def _stdlib_readable_by_all() -> bool:
    """Whether ``nobody`` could import the standard library (a Python under a private home
    directory, e.g. pyenv in /root, it cannot: then the program keeps the bootstrap's user)."""
    stdlib = Path(os.__file__).resolve().parent
    for directory in [stdlib, *stdlib.parents]:
        mode = directory.stat().st_mode
        if not mode & 0o001 or (directory == stdlib and not mode & 0o004):
            return False
    return True


def _scrubbed_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _tail(path: Path, chars: int) -> str:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(0, size - 4 * chars))
            return f.read().decode("utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is the group id
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


def run_program(program: str, limits: Limits | None = None) -> RunResult:
    """Run ``program`` (Python source) fenced in; passed iff it ran to its end in time."""
    limits = limits or Limits()
    marker = f"SANDBOX-OK-{secrets.token_hex(16)}"
    outer = Path(tempfile.mkdtemp(prefix="nanogpt-sandbox-"))
    workdir = outer / "work"  # the program's directory; its output files live beside it
    workdir.mkdir()
    outer.chmod(0o755)
    job = {
        "workdir": str(workdir),
        "program": program,
        "marker": marker,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "file_size_mb": limits.file_size_mb,
        "open_files": limits.open_files,
        "processes": limits.processes,
        "drop_privileges": os.geteuid() == 0 and _stdlib_readable_by_all(),
    }
    cmd = [*_namespace_prefix(), sys.executable, "-I", "-B", "-c", _BOOTSTRAP]
    out_path, err_path = outer / "stdout", outer / "stderr"
    start = time.monotonic()
    status, returncode = "failed", None
    try:
        import json

        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=_scrubbed_env(str(workdir)),
                start_new_session=True,
                close_fds=True,
            )
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_group(proc)  # also reaps anything the program left behind
        wall_s = time.monotonic() - start
        stdout = _tail(out_path, limits.output_chars)
        stderr = _tail(err_path, limits.output_chars)
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    passed = status != "timeout" and returncode == 0 and marker in stdout
    if passed:
        status = "passed"
    elif status != "timeout" and returncode is not None and returncode < 0:
        status = f"killed:{signal.Signals(-returncode).name}"
    elif status != "timeout" and returncode is not None and returncode > 128:
        # unshare reports a child killed by signal N as exit status 128 + N
        try:
            status = f"killed:{signal.Signals(returncode - 128).name}"
        except ValueError:
            pass
    output = (stdout.replace(marker, "") + "\n" + stderr).strip()[-limits.output_chars :]
    return RunResult(passed, status, returncode, wall_s, output)


def run_programs(
    programs: Sequence[str], limits: Limits | None = None, workers: int | None = None
) -> list[RunResult]:
    """Run many programs, ``workers`` at a time (default: half the CPUs, at least 1)."""
    workers = workers or max(1, (os.cpu_count() or 2) // 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, limits), programs))
