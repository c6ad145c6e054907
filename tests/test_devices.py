"""More than one device: populations sharded over 8 forced host devices, and a sweep over two processes.

XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before JAX starts, so the 8-device
sweeps run in one subprocess (a module fixture) that writes its tables and a JSON report; the tests
read them. Two-process runs are `sweeps run ... --coordinator localhost:PORT --num-processes 2
--process-id I` on this machine, over JAX's CPU collectives (gloo).
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import forked
import jax
import numpy as np
import pandas as pd
import pytest

import sweeps
from sweeps.cli.main import main
from sweeps.driver.devices import select_devices

from helpers import assert_same_table, device_sweep, synthetic

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "SWEEPS_CACHE_DIR": "off"}

EIGHT_DEVICES = """
import json, sys
from pathlib import Path
import jax, numpy as np
import sweeps
from sweeps.driver import checkpoints
from sweeps.driver.populations import ChunkRunner, controls_for, new_population
from sweeps.driver.devices import select_devices
from sweeps.engine import edits, flat_params
from sweeps.driver.devices import Devices
from helpers import device_sweep, synthetic

out = Path(sys.argv[1])
data = synthetic("binary", rows=400)
report = {"devices": len(jax.devices())}

placed = []  # every population the scheduler trains: its layout as it arrives (before `place`)
original_place = Devices.place
def place(self, pop):
    if not hasattr(pop, "step"):  # an edit's arguments (masks, indices) are placed here too
        return original_place(self, pop)
    sharding = pop.step.sharding
    placed.append({"spec": str(sharding.spec), "devices": len(sharding.device_set), "size": pop.size,
                   "born_sharded": sharding.is_equivalent_to(self.members, 2)})
    return original_place(self, pop)
Devices.place = place

# fused: both batch sizes in one program (micro-batches of 16), padded to 16 members over the 8 devices
for name, extra in [
    ("whole", {}), ("chunked", {"max_population": 3}), ("three", {"devices": 3}), ("fused", {"fuse": True})
]:
    placed.clear()
    result = sweeps.run(data, **device_sweep(**extra))
    result.table.to_parquet(out / f"{name}.parquet")
    result.history.to_parquet(out / f"{name}_history.parquet")
    report[name] = {"placed": list(placed), "groups": result.config["groups"], "devices": result.config["devices"]}
report["describe"] = sweeps.dry_run(data, **device_sweep()).describe()

# copy_members across shards: every member takes the state of a member on another device (one member per device,
# in reverse order). The sweeps' settings with 8 learning rates at batch 32: their compiled programs serve.
layout = select_devices(None)
eight_rates = {"learning_rate": list(np.logspace(-4, -2, 8))}
sweep = sweeps.dry_run(data, **device_sweep(space=eight_rates, strategy=sweeps.Grid()))
group, config = sweep.groups[0], sweep.plan.config
assert (group.structure.batch_size, group.population) == (32, 8), group
pop = new_population(group.structure, group.chunks[0], group.population, 0, "shared", layout)
splits = layout.replicate(jax.tree.map(np.asarray, (
    sweeps.engine.Split(data.x_train, data.y_train), sweeps.engine.Split(data.x_val, data.y_val))))
controls = controls_for(data, config.early_stopping, config.divergence_threshold)
stop = config.early_stopping["metric"]
runner = ChunkRunner(group.structure, data, 0, stop, controls, splits=splits, fetch=layout.fetch)
pop, _ = runner.epoch(pop, 0)
before = layout.fetch(pop)
source = np.arange(8)[::-1].astype(np.int32)
copied = layout.edit(edits.copy_members, pop, source)
after = layout.fetch(copied)
report["copy"] = {
    "spec": str(copied.step.sharding.spec), "devices": len(copied.step.sharding.device_set),
    "moved": all(
        np.array_equal(np.asarray(a), np.asarray(b)[source])
        for name in edits.TRAINING_STATE
        for a, b in zip(jax.tree.leaves(getattr(after, name)), jax.tree.leaves(getattr(before, name)))
    ),
    "kept_numbers": bool(np.array_equal(after.numbers, before.numbers)),
    "differs": bool(not np.array_equal(flat_params(after.params), flat_params(before.params))),
}
masked = layout.edit(edits.mask_out, copied, np.arange(8) % 2 == 0)
changed = layout.edit(edits.set_hparams, masked, np.arange(8) < 4, {"learning_rate": np.full(8, 0.5, np.float32)})
report["edits_keep_sharding"] = [str(p.active.sharding.spec) for p in (masked, changed)] + [
    str(changed.hparams["learning_rate"].sharding.spec)]

# checkpoints: crash mid-chunk, resume; the restore target carries the sharding
class Stop(Exception):
    pass
original_save, saves = checkpoints.Checkpoints.save, []
def save(self, snapshot):
    step = original_save(self, snapshot)
    saves.append(step)
    if len(saves) == 2:
        self.wait()
        raise Stop()
    return step
checkpoints.Checkpoints.save = save
run_dir = out / "run"
try:
    sweeps.run(data, run_dir=run_dir, checkpoint_every=1, **device_sweep())
except Stop:
    pass
checkpoints.Checkpoints.save = original_save
targets = []
original_restore = checkpoints.Checkpoints.restore_latest
def restore_latest(self, population_target, **options):
    def target(meta):
        abstract = population_target(meta)
        targets.extend(str(getattr(leaf, "sharding", None)) for leaf in jax.tree.leaves(abstract))
        return abstract
    return original_restore(self, target, **options)
checkpoints.Checkpoints.restore_latest = restore_latest
try:
    sweeps.run(data, run_dir=run_dir, resume=True, devices=4, **device_sweep())
except ValueError as e:
    report["other_count"] = str(e)
placed.clear()
sweeps.run(data, run_dir=run_dir, resume=True, **device_sweep())
report["restored"] = {"placed": list(placed), "targets": sorted(set(targets))}
(out / "report.json").write_text(json.dumps(report))
"""


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The 8-device subprocess's tables and report."""
    out = tmp_path_factory.mktemp("eight")
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    done = forked.run(
        [sys.executable, "-c", EIGHT_DEVICES, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=400)


@pytest.fixture(scope="module")
def one_device(data):
    return sweeps.run(data, **device_sweep())


def test_eight_devices_give_the_single_device_table(eight, one_device):
    out, report = eight
    assert report["devices"] == 8 and report["whole"]["devices"]["count"] == 8
    for name in ("whole", "chunked", "three", "fused"):
        assert_same_table(pd.read_parquet(out / f"{name}.parquet"), one_device.table)
    assert [(g["trials"], g["population"], g["per_device"]) for g in report["fused"]["groups"]] == [(10, 16, 2)]


def test_a_population_that_is_not_a_multiple_of_the_devices_is_padded_and_the_padding_never_shows(eight):
    out, report = eight
    whole, chunked, three = (report[name]["groups"] for name in ("whole", "chunked", "three"))
    assert [(g["trials"], g["population"], g["per_device"], g["padding"]) for g in whole] == [(5, 8, 1, 3)] * 2
    assert [(g["chunks"], g["population"], g["padding"]) for g in chunked] == [(2, 8, 11)] * 2  # chunks of 3 and 2
    assert [(g["population"], g["per_device"], g["padding"]) for g in three] == [(6, 2, 1)] * 2
    for name in ("whole", "chunked", "three"):
        table, history = pd.read_parquet(out / f"{name}.parquet"), pd.read_parquet(out / f"{name}_history.parquet")
        assert sorted(table["number"]) == list(range(10)) and set(history["trial"]) == set(range(10))


def test_populations_are_built_directly_into_the_sharding(eight):
    _, report = eight
    placed = report["whole"]["placed"] + report["chunked"]["placed"]
    assert len(placed) == 2 + 4
    assert all(p == {"spec": "P('trials',)", "devices": 8, "size": 8, "born_sharded": True} for p in placed)
    assert {p["devices"] for p in report["three"]["placed"]} == {3}


def test_copy_members_moves_state_across_shards_and_edits_keep_the_sharding(eight):
    _, report = eight
    copy = report["copy"]
    assert copy["moved"] and copy["kept_numbers"] and copy["differs"]
    assert copy["spec"] == "P('trials',)" and copy["devices"] == 8
    assert report["edits_keep_sharding"] == ["P('trials',)"] * 3


def test_a_checkpoint_restores_into_the_sharding_and_resumes_to_the_same_table(eight):
    out, report = eight
    restored = report["restored"]
    assert restored["targets"] and all("P('trials',)" in t for t in restored["targets"])
    assert restored["placed"][0]["born_sharded"] and restored["placed"][0]["devices"] == 8
    resumed = sweeps.load_result(out / "run")
    pd.testing.assert_frame_equal(resumed.table, pd.read_parquet(out / "whole.parquet"))
    pd.testing.assert_frame_equal(resumed.history, pd.read_parquet(out / "whole_history.parquet"))
    assert "started on 8 devices and this run has 4" in report["other_count"]
    assert "resume on 8 devices" in report["other_count"]


def test_the_dry_run_shows_devices_and_members_and_memory_per_device(eight):
    _, report = eight
    text = report["describe"]
    assert "devices: 8 devices (cpu)" in text and "memory budget" in text and "MB per device" in text
    assert "per_device" in text and "memory_mb" in text


def test_devices_refuses_counts_and_ids_that_do_not_exist():
    count = len(jax.devices())
    assert select_devices(None).count == count and select_devices(1).count == 1
    with pytest.raises(ValueError, match=rf"devices must be between 1 and {count} .*but got devices=0"):
        select_devices(0)
    with pytest.raises(ValueError, match=rf"but got devices={count + 1}; pass None"):
        select_devices(count + 1)
    with pytest.raises(ValueError, match=r"names 99, which is not a device id here; the ids are \[0"):
        select_devices([99])
    with pytest.raises(ValueError, match="each device id once"):
        select_devices([0, 0])
    with pytest.raises(TypeError, match="a count like 4, or a list of device ids"):
        select_devices("all")
    with pytest.raises(TypeError):
        select_devices(True)


# --- two processes -------------------------------------------------------------------------

CONFIG = """
[data]
path = "{csv}"
target = "target"
[space]
learning_rate = {{loguniform = [1e-4, 1e-1]}}
[strategy]
name = "grid"
n = 5
[train]
epochs = 3
early_stopping = {{patience = 2}}
[run]
checkpoint_every = 1
keep_models = 2
plots = false
"""
# One pair of processes makes both two-process runs (each process pays JAX's start once): `sweeps run`'s main
# trains the sweep to the end in FINISHED and prints its exit status; then the same run starts again in KILLED and
# each process kills itself right after that run's 2nd checkpoint is on disk (mid-chunk, after epoch 2 of 3, so the
# resumed run restores a sharded population): a job pre-empted as a whole.
RUN_THEN_KILLED = """
import os, signal, sys
from sweeps.driver import checkpoints
from sweeps.cli.main import main
config, finished, killed, flags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
code = main(["run", config, "--out", finished, *flags])
print(f"{STATUS}{code}", flush=True)
saves, original = [], checkpoints.Checkpoints.save
def save(self, snapshot):
    step = original(self, snapshot)
    saves.append(step)
    if len(saves) == 2:
        self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return step
checkpoints.Checkpoints.save = save
sys.exit(main(["run", config, "--out", killed, *flags]))
"""
STATUS = "finished run's exit status: "
RUN_THEN_KILLED = RUN_THEN_KILLED.replace("{STATUS}", STATUS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_processes(args, script=None, launcher=False):
    """Runs `sweeps ARGS` (or `script` with ARGS) as processes 0 and 1 of one run; returns their (code, output).

    The processes join with --coordinator, --num-processes and --process-id, or with `launcher`, with no
    flags, through the variables `srun` sets for a two-task SLURM step on this host.
    """
    port = free_port()
    head = [sys.executable, "-c", script] if script else [sys.executable, "-m", "sweeps"]

    def start(i):
        flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)]
        slurm = {
            "SLURM_JOB_ID": "4242",
            "SLURM_STEP_NODELIST": "localhost",
            "SLURM_NTASKS": "2",
            "SLURM_PROCID": str(i),
            "SLURM_LOCALID": str(i),
            "JAX_COORDINATOR_PORT": str(port),
        }
        return forked.Popen(
            [*head, *map(str, args), *([] if launcher else flags)],
            env={**ENV, **(slurm if launcher else {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    processes = [start(i) for i in range(2)]
    try:
        return [(p.wait(timeout=300), p.stdout.read()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """CONFIG on 400 rows of 8 features: in one process its sweep has the shapes of `one_device`'s batch-32 group
    (population 5, 320 training rows, early stopping), whose compiled programs it reuses."""
    folder = tmp_path_factory.mktemp("two")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = x @ rng.normal(size=8) + 0.3 * rng.normal(size=400) > 0
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)]).assign(target=np.where(y, "yes", "no"))
    frame.to_csv(folder / "rows.csv", index=False)
    (folder / "sweep.toml").write_text(CONFIG.format(csv=(folder / "rows.csv").as_posix()))
    return folder / "sweep.toml"


@pytest.fixture(scope="module")
def one_process(config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one") / "run"
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    return sweeps.load_result(run_dir)


@pytest.fixture(scope="module")
def two_process_runs(config, tmp_path_factory):
    """RUN_THEN_KILLED's two runs: the finished run's folder, exit statuses and outputs; the killed run's folder, the
    processes' exit codes and process 0's output after the finished run."""
    folder = tmp_path_factory.mktemp("both")
    finished, killed = folder / "run", folder / "killed"
    (code0, out0), (code1, out1) = two_processes([config, finished, killed], script=RUN_THEN_KILLED)
    assert STATUS in out0 and STATUS in out1, out0[-3000:] + out1[-3000:]
    (out0, rest0), (out1, rest1) = out0.split(STATUS, 1), out1.split(STATUS, 1)
    statuses = int(rest0.split()[0]), int(rest1.split()[0])
    return finished, statuses, out0, out1, killed, (code0, code1), rest0


def test_two_processes_give_the_one_process_table(one_process, two_process_runs):
    run_dir, statuses, out0, out1, *_ = two_process_runs
    assert statuses == (0, 0), out0[-3000:] + out1[-3000:]
    both = sweeps.load_result(run_dir)
    assert both.config["devices"]["processes"] == 2 and both.config["devices"]["count"] == 2
    # the processes agreed on one memory budget (64 bits: it once came back cut to 32, negative, one member a chunk)
    assert json.loads((run_dir / "run.json").read_text())["resources"]["memory_budget"] > 0
    assert [(g["chunks"], g["population"], g["per_device"]) for g in both.config["groups"]] == [(1, 6, 3)]
    assert_same_table(both.table, one_process.table)
    assert "best: trial" in out0, "process 0 prints the summary"
    assert f"process 1 of 2 finished; process 0 wrote {run_dir}" in out1 and "best: trial" not in out1
    assert [e["trial"] for e in both.config["models"]] == [e["trial"] for e in one_process.config["models"]]


def test_two_processes_killed_with_sigkill_resume_to_the_same_table(two_process_runs):
    uninterrupted_dir, _, _, _, run_dir, (code0, code1), out0 = two_process_runs
    assert code0 == -signal.SIGKILL and code1 != 0, out0[-3000:]
    assert not (run_dir / "config.json").exists(), "killed before it finished"
    # resumed with no flags, as `srun sweeps resume RUN_DIR` would: the launcher's variables join the processes
    (code0, out0), (code1, out1) = two_processes(["resume", run_dir], launcher=True)
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    uninterrupted = sweeps.load_result(uninterrupted_dir)
    resumed = sweeps.load_result(run_dir)
    assert resumed.config["devices"]["processes"] == 2
    pd.testing.assert_frame_equal(resumed.table, uninterrupted.table)
    pd.testing.assert_frame_equal(resumed.history, uninterrupted.history)


def test_process_flags_are_all_or_none_and_name_what_is_wrong(config, capsys):
    assert main(["run", str(config), "--coordinator", "localhost:1234", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "needs --coordinator, --num-processes and --process-id together" in err
    assert "--num-processes, --process-id are missing" in err
    args = ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0", "--dry-run"]
    assert main(["run", str(config), *args]) == 2
    assert "--coordinator must be HOST:PORT" in capsys.readouterr().err
    args = ["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2", "--dry-run"]
    assert main(["run", str(config), *args]) == 2
    assert "--process-id must be an integer in [0, 1] for --num-processes 2, but got 2" in capsys.readouterr().err


def test_a_lone_process_joins_nothing():
    from sweeps.driver.distributed import cluster_launcher, join

    assert cluster_launcher() is None and join() is False
    assert join("localhost:1234", 1, 0) is False  # one process of one: nothing to join


def test_numbers_cross_between_processes_with_all_64_bits():
    from sweeps.driver.distributed import _as_bytes, _from_bytes

    for value in (0, 1, 2**31 + 5, 11_448_156_160, -(2**40)):
        assert _from_bytes(_as_bytes(value)) == value
