"""The forked processes other tests start (`forked.run`, `forked.Popen`) behave as `python -c` / `python -m` would."""

import json
import os
import signal
import subprocess
import sys

import forked

PROBE = """
import json, os, sys, jax
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path": sys.path[:2], "name": __name__,
    "variable": os.environ.get("PROBE"), "x64": jax.config.jax_enable_x64, "devices": len(jax.devices()),
}))
sys.stderr.write("to stderr\\n")
sys.exit(int(sys.argv[1]))
"""


def test_a_forked_python_has_its_arguments_folder_environment_path_and_exit_status(tmp_path):
    env = {
        **os.environ,
        "PROBE": "yes",
        "PYTHONPATH": str(tmp_path / "first"),
        "JAX_ENABLE_X64": "1",  # read by JAX at import: applied in the child
        "XLA_FLAGS": "--xla_force_host_platform_device_count=3",  # read when the child's backend starts
    }
    done = forked.run([sys.executable, "-c", PROBE, "7", "b"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 7 and done.stderr == "to stderr\n"
    seen = json.loads(done.stdout)
    assert seen == {
        "argv": ["-c", "7", "b"],
        "cwd": str(tmp_path),
        "path": ["", str(tmp_path / "first")],
        "name": "__main__",
        "variable": "yes",
        "x64": True,
        "devices": 3,
    }
    module = forked.run([sys.executable, "-m", "sweeps", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("usage: sweeps "), module


def test_a_forked_python_dies_by_signal_and_runs_its_exit_handlers_and_threads(tmp_path):
    script = "import time\nprint('ready', flush=True)\ntime.sleep(60)"
    process = forked.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()
    ending = "import atexit, threading, time\natexit.register(print, 'exit handler')\n"
    ending += "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')"
    done = forked.run([sys.executable, "-c", ending], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "main\nthread\nexit handler\n", "")
    raised = forked.run([sys.executable, "-c", "raise ValueError('boom')"], capture_output=True, text=True)
    assert raised.returncode == 1 and raised.stderr.rstrip().endswith("ValueError: boom")
