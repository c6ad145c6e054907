"""Python processes for tests, forked from one interpreter that has already imported sweepax.

A test that runs `python -c SCRIPT` or `python -m sweeps ...` in a process of its own (a kill, a signal, a second
JAX process, forced host devices) would pay Python's, JAX's and sweepax's imports each time: about 2.5 CPU-seconds,
most of such a test on the 2-core machine. `run` and `Popen` here take `subprocess`'s arguments for those two
command forms and start the process by forking a server that each test worker starts once, which imported jax,
flax, optax, orbax, pandas and sweepax but never started a JAX backend (JAX starts its threads with its first
backend, so the fork copies no thread of JAX's). The process is a real one all the same: its own pid, signals,
file descriptors, exit status (a signal's as a negative code, as `subprocess` reports it), environment, working
folder and `sys.path` (PYTHONPATH's folders first), and it exits as Python does (threads joined, exit handlers run).
Environment variables that JAX reads at import (`JAX_*`) are applied in the child when they differ from the
server's; XLA_FLAGS is read when the child's backend starts. Any other command goes to `subprocess` unchanged.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The server: reads (request, fds) messages; for each, forks a waiter that forks the process, reports its pid, waits
# for it and reports its wait status on the request's own socket.
SERVER = r"""
import json, os, signal, socket, sys, warnings
FILTERS = warnings.filters[:]  # the child's, as a new interpreter's
# Python 3.12 warns about forking a process that runs threads (here jemalloc's, started with jaxlib)
warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
import flax, jax, numpy, optax, orbax.checkpoint, pandas
import sweeps, sweeps.cli.main, sweeps.sweep, sweeps.cli.commands, sweeps.cli.config, sweeps.results.plots

BASE_ENV, BASE_PATH = dict(os.environ), [p for p in sys.path if p]
control = socket.socket(fileno=int(sys.argv[1]))
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel


def jax_environment(env):
    for name, value in env.items():
        if name.startswith("JAX_") and BASE_ENV.get(name) != value and name.lower() in jax.config.values:
            current = jax.config.values[name.lower()]
            if isinstance(current, bool):
                value = value.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, (int, float)) and current is not None:
                value = type(current)(value)
            jax.config.update(name.lower(), value)


def child(request, stdio):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    warnings.filters[:] = FILTERS
    os.close(control.detach())
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in set(stdio) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    argv = request["argv"]
    jax_environment(request["env"])
    if argv[1] == "-c":
        import types

        sys.argv = ["-c", *argv[3:]]
        sys.path[:] = ["", *extra, *BASE_PATH]
        main = types.ModuleType("__main__")
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        exec(compile(argv[2], "<string>", "exec"), main.__dict__)
    else:
        import runpy

        sys.argv = [argv[2], *argv[3:]]
        sys.path[:] = [request["cwd"], *extra, *BASE_PATH]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    sys.exit(0)


while True:
    try:
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
    except OSError:
        break
    if not message:
        break
    request = json.loads(message)
    reply, stdio = socket.socket(fileno=fds[0]), fds[1:]
    if os.fork() == 0:  # the waiter
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:
            reply.close()
            child(request, stdio)
        control.close()
        for fd in stdio:
            os.close(fd)
        reply.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        reply.sendall(json.dumps({"status": status}).encode() + b"\n")
        os._exit(0)
    reply.close()
    for fd in stdio:
        os.close(fd)
"""

_server: tuple[subprocess.Popen, socket.socket] | None = None
_lock = threading.Lock()


def _control() -> socket.socket:
    """The worker's server, started on first use."""
    global _server
    with _lock:
        if _server is None or _server[0].poll() is not None:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            server = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            theirs.close()
            _server = (server, mine)
            atexit.register(_stop, server, mine)
        return _server[1]


def _stop(server: subprocess.Popen, control: socket.socket) -> None:
    control.close()  # the server reads end of file and exits
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def _forkable(args) -> bool:
    args = [str(a) for a in args] if isinstance(args, (list, tuple)) else None
    return bool(args) and len(args) >= 3 and args[0] == sys.executable and args[1] in ("-c", "-m")


class Popen:
    """`subprocess.Popen` for `[sys.executable, "-c" | "-m", ...]`, forked from the server (module docstring)."""

    def __init__(self, args, *, env=None, cwd=None, stdin=None, stdout=None, stderr=None, text=False, **unused):
        if unused or not _forkable(args):
            raise TypeError(
                f"forked.Popen runs [sys.executable, '-c' or '-m', ...] with subprocess's usual arguments: {args}"
            )
        self.args, self.returncode = [str(a) for a in args], None
        mine = []  # descriptors opened here for the child, closed here once it has them

        def end(spec, index):
            """(our stream or None, the child's descriptor) for stdin (index 0), stdout (1) or stderr (2)."""
            if spec == subprocess.PIPE:
                read, write = os.pipe()
                ours, theirs = (write, read) if index == 0 else (read, write)
                mine.append(theirs)
                mode = ("w" if index == 0 else "r") + ("" if text else "b")
                return open(ours, mode, encoding="utf-8" if text else None, buffering=-1 if text else 0), theirs
            if spec == subprocess.DEVNULL:
                mine.append(os.open(os.devnull, os.O_RDWR))
                return None, mine[-1]
            if spec is None or spec == subprocess.STDOUT:
                return None, index  # inherited (STDOUT: replaced by stdout's below)
            return None, spec if isinstance(spec, int) else spec.fileno()

        self.stdin, fd_in = end(stdin, 0)
        self.stdout, fd_out = end(stdout, 1)
        self.stderr, fd_err = end(stderr, 2)
        ends = [fd_in, fd_out, fd_out if stderr == subprocess.STDOUT else fd_err]
        self._reply, theirs = socket.socketpair()
        request = {"argv": self.args, "env": dict(os.environ if env is None else env), "cwd": str(cwd or os.getcwd())}
        try:
            socket.send_fds(_control(), [json.dumps(request).encode()], [theirs.fileno(), *ends])
        finally:
            theirs.close()
            for fd in mine:
                os.close(fd)
        self._lines = self._reply.makefile("r")
        self.pid = json.loads(self._lines.readline())["pid"]
        self._waiting = threading.Thread(target=self._wait_status, daemon=True)
        self._done = threading.Event()
        self._waiting.start()

    def _wait_status(self):
        line = self._lines.readline()
        status = json.loads(line)["status"] if line else 255 << 8
        self.returncode = os.waitstatus_to_exitcode(status)
        self._done.set()
        self._lines.close()
        self._reply.close()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, input=None, timeout=None):
        if input is not None and self.stdin is not None:
            self.stdin.write(input)
        if self.stdin is not None:
            self.stdin.close()
        outputs = {}

        def read(name, stream):
            outputs[name] = stream.read()

        readers = [
            threading.Thread(target=read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.stdout), ("stderr", self.stderr))
            if stream is not None
        ]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return outputs.get("stdout"), outputs.get("stderr")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def run(args, *, capture_output=False, timeout=None, check=False, input=None, **kwargs):
    """`subprocess.run`, forking the server for a Python command (module docstring); others go to `subprocess`."""
    if not _forkable(args):
        return subprocess.run(args, capture_output=capture_output, timeout=timeout, check=check, input=input, **kwargs)
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    process = Popen(args, **kwargs)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        done.check_returncode()
    return done
