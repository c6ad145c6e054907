"""Real servers on localhost for tests (optuna-dashboard, mlflow server, tensorboard): started, waited for, stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: Sequence[str], url: str, timeout: float = 60.0) -> Iterator[str]:
    """Runs `command` (a server) until the block ends, once `url` answers 200; skips the test, naming the server and
    its last output, when it does not answer within `timeout` seconds."""
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        yield url
                        return
            except OSError:
                time.sleep(0.3)
        output = process.stdout.read().decode(errors="replace")[-1500:] if process.poll() is not None else ""
        pytest.skip(f"{command[0]} did not answer at {url} within {timeout:.0f} s: {output}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        process.stdout.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())
