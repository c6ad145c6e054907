"""Smoke tests of the benchmarks: the --quick subsets run, write well-formed rows, and never into benchmarks/results."""

import functools
import importlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import sweeps
from models import MLP
from sweeps.engine import memory

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "device",
    "workload",
    "mode",
    "n",
    "epochs",
    "model_epochs_per_s",
    "sweep_s",
    "compile_s",
    "peak_mem_mb",
    "gflops",
    "flops_source",
    "peak_fraction",
    "xla_bandwidth_fraction",
    "unfused_bandwidth_fraction",
    "unfused_roof_model_epochs_per_s",
    "roofline_peak_fraction",
    "matmul_peak_gflops",
    "mem_bandwidth_gbs",
    "timed_trials",
    "extrapolated",
}


def quick_output(stdout: str, pattern: str, tmp_path: Path) -> Path:
    """The file a --quick run printed it wrote: in a new temporary folder (TMPDIR=tmp_path), not benchmarks/results."""
    match = re.search(pattern, stdout)
    assert match, stdout[-1500:]
    out = Path(match.group(1))
    assert out.parent.parent == tmp_path and out.parent.name.startswith("sweeps-quick-"), out
    assert f"--quick: writing into {out.parent}" in stdout
    return out


def import_benchmark(name: str):
    """The module benchmarks/<name>.py, imported as its scripts import each other (benchmarks/ on the path)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module", autouse=True)
def lesson_data_read_once():
    """The benchmarks run here in this process read the lesson's churn CSV once: each of their workloads would read
    it again (the same rows)."""
    workloads, lanes = import_benchmark("workloads"), import_benchmark("lanes")
    once = functools.cache(workloads.lesson_data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workloads, "lesson_data", once)
        patch.setattr(lanes, "lesson_data", once)
        yield


def test_quick_run_writes_rows_with_every_key(tmp_path, monkeypatch, capsys):
    """`throughput.py --quick`'s main() in this process (it compiles each program itself, ahead of time), its
    temporary folder made under tmp_path."""
    throughput = import_benchmark("throughput")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert throughput.main(["--quick"]) == 0
    stdout = capsys.readouterr().out
    out = quick_output(stdout, r"\d+ rows -> (\S+\.jsonl)", tmp_path)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    modes = {(r["mode"], r["n"]) for r in rows}
    assert modes == {(mode, n) for mode in ("vmap", "lanes", "sequential", "sequential-lanes") for n in (1, 8)}
    for row in (r for r in rows if r["mode"] == "lanes"):  # 8 trials are too few to cut (lane_plan.LANE_FEWEST)
        assert (row["chunks"], row["chunk_population"]) == (1, row["n"]), row
    for row in rows:
        missing = KEYS - set(row)
        assert not missing, f"row {row['mode']} N={row['n']} lacks {sorted(missing)}"
        assert row["workload"] == "lesson" and row["epochs"] == 1
        assert row["model_epochs_per_s"] > 0 and row["sweep_s"] >= row["compile_s"] > 0
        assert 0 < row["peak_fraction"] and row["peak_mem_mb"] > 0
        assert 1 <= row["timed_trials"] <= row["n"]
        assert row["extrapolated"] == (row["timed_trials"] < row["n"])
        assert row["flops_source"] == "xla_cost_analysis", row  # the epoch's parts costed (engine.epoch_parts)
    assert "| lesson | vmap | 8 |" in stdout  # the markdown table
    against = r"lesson N=8: against sequential: vmap [\d.]+x, lanes [\d.]+x, \(lanes against sequential-lanes [\d.]+x\)"
    assert re.search(against, stdout), stdout[-1500:]
    assert out.with_suffix(".png").stat().st_size > 0  # the plot


def test_digits_cnn_workload_trains_the_users_cnn_in_vmap_and_sequential(tmp_path, monkeypatch):
    """`--workload digits-cnn` (models.cnn.CNN on scikit-learn's digits) through the engine's modes, N=1 and 1 epoch:
    both modes share one compiled program. The digits are cut to 160 training and 64 validation rows (5 steps)."""
    pytest.importorskip("sklearn")
    throughput, workloads = import_benchmark("throughput"), import_benchmark("workloads")
    full = workloads.digits_data()
    few = sweeps.Dataset.from_arrays(
        full.x_train[:160], full.y_train[:160], full.x_val[:64], full.y_val[:64], task="multiclass"
    )
    monkeypatch.setattr(workloads, "digits_data", lambda: few)
    monkeypatch.setattr(throughput, "plot", lambda *a, **k: None)
    out = tmp_path / "cnn.jsonl"
    argv = ["--quick", "--workload", "digits-cnn", "--mode", "vmap", "sequential", "--n", "1", "--out", str(out)]
    assert throughput.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["mode"], r["n"]) for r in rows] == [("vmap", 1), ("sequential", 1)]
    for row in rows:
        assert KEYS <= set(row) and "hidden" not in row, sorted(set(row))
        assert row["model"] == "CNN(channels=(16, 32), dense=64, classes=10)" and row["steps_per_epoch"] == 5
        assert row["model_epochs_per_s"] > 0 and row["flops_source"] == "xla_cost_analysis"
        # XLA's count of the CNN (its convolutions are matrix products) against the hand count from the jaxpr: 2%
        # apart (XLA adds the elementwise work; the hand count charges the first layer's input gradient)
        assert 0.95 < row["flops"] / row["flops_analytic"] < 1.05, row


def test_a_population_whose_estimate_exceeds_free_memory_is_a_skipped_row(tmp_path, monkeypatch):
    throughput = import_benchmark("throughput")
    lesson = throughput.make_workloads()["lesson"]
    sizes = {n: memory.population_bytes(lesson.structure(), n, lesson.data.n_train, lesson.data.n_val) for n in (1, 8)}
    free = (sizes[1] + sizes[8]) // 2  # room for N=1, not for N=8
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: free)
    monkeypatch.setattr(throughput, "plot", lambda *a, **k: None)
    out = tmp_path / "fit.jsonl"
    assert throughput.main(["--quick", "--out", str(out)]) == 0
    rows = {(r["mode"], r["n"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert "skipped" not in rows["vmap", 1] and rows["vmap", 1]["memory_estimate_mb"] == sizes[1] / 2**20
    skip = rows["vmap", 8]["skipped"]
    assert skip.startswith("memory estimate ") and " GiB > available " in skip and skip.endswith(" GiB"), skip
    assert "skipped" not in rows["sequential", 8]  # one member at a time: no population of 8 is built


def test_strategies_quick_run_writes_one_row_per_strategy_with_a_curve(tmp_path, monkeypatch, capsys):
    """`strategies.py --quick`'s main() in this process (each row clears JAX's caches and compiles what it needs, as
    in a fresh process), its temporary folder made under tmp_path."""
    strategies = import_benchmark("strategies")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # one of each kind (a plain sampler, rounds, a population strategy with refill, PBT): the others share their code
    assert strategies.main(["--quick", "--strategies", "grid", "bayes", "halving-refill", "pbt"]) == 0
    stdout = capsys.readouterr().out
    out = quick_output(stdout, r"rows: (\S+\.jsonl)", tmp_path)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["strategy"] for r in rows] == ["grid", "bayes", "halving-refill", "pbt"]
    for row in rows:
        assert row["data"] == "diabetes" and row["trials"] == len(row["curve"]) and row["allotted"] == 24
        # refill promotes asynchronously and may run over (32 of 24 at the seed here)
        over = 1.5 if row["strategy"] == "halving-refill" else 1.25
        assert row["best"] == min(row["curve"]) and 0 < row["model_epochs"] <= over * 24
        assert row["trials"] == (
            8 if row["strategy"] in ("grid", "bayes") else {"halving-refill": 14, "pbt": 2}[row["strategy"]]
        )
        assert row["compilations"] >= 1 and row["wall_s"] > 0
    assert {r["rounds"] for r in rows if r["strategy"] == "bayes"} == {4}
    assert "| diabetes | bayes | 8 |" in stdout
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".md").is_file()
    # what the table cannot say: 8 trials make a grid of the ranges' ends only (learning rate 1e-4 or 1:
    # half diverge, the rest barely train), and why model-epochs spent differ from the allotted
    notes = out.with_suffix(".md").read_text().split("| diabetes | pbt |")[1]
    assert notes.strip() in stdout
    grid = rows[0]["grid_points"]
    assert grid == pytest.approx({"learning_rate": [1e-4, 1.0], "weight_decay": [1e-5, 0.1], "dropout": [0.0, 0.5]})
    assert (
        "- diabetes: grid: 8 trials make 2 points per axis, the ends of each range (learning_rate 0.0001 and 1,"
        in notes
    )
    assert "27 or more trials (--trials) give the grid inner points" in notes
    for row in rows:
        name, spent, allotted = row["strategy"], row["model_epochs"], row["allotted"]
        if spent < allotted:
            assert re.search(rf"spent under the allotted: .*\b{name} {row['diverged']} of {row['trials']}\b", notes), (
                name
            )
        if spent > allotted:
            assert f"{name} spent {spent} of {allotted}" in notes, name
    refill = next(r for r in rows if r["strategy"] == "halving-refill")
    if refill["model_epochs"] > refill["allotted"]:
        assert "among the best 1/3 (rounded up) of the trials that have reached that rung so far" in notes


def test_devices_measures_a_population_sharded_over_forced_host_devices(tmp_path, monkeypatch, capsys):
    """`throughput.py --devices` in this process: it measures each device count in a subprocess of its own."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # --devices imports device_scaling when it starts
    throughput = import_benchmark("throughput")
    out = tmp_path / "devices.jsonl"
    assert throughput.main(["--devices", "2", "--n", "3", "--epochs", "1", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["devices"], row["n"], row["population"], row["per_device"]) == (2, 3, 4, 2)  # padded to 4
    assert row["model_epochs_per_s"] > 0 and row["vs_fewest_devices"] == 1.0
    assert "| 2 | 3 | 2 |" in capsys.readouterr().out  # the markdown table


def test_lanes_and_compiler_options_quick_runs_print_their_rows(tmp_path, monkeypatch, capsys):
    """Both scripts' main() in this process, with the arguments a command line gives them (they read sys.argv). N=8
    at batch 32 is the population throughput's --quick run compiles: the session's compilation cache serves it."""
    lanes, compiler_options = import_benchmark("lanes"), import_benchmark("compiler_options")
    out = tmp_path / "lanes.jsonl"
    argv = ["lanes.py", "--n", "8", "--batches", "16,32", "--epochs", "1", "--repeats", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    lanes.main()
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["n"] == 8 and row["batch_sizes"] == [16, 32]
    assert row["parameters"] == 8 * (45 * 64 + 64 + 64 + 1), "eight members of the lesson MLP 45 -> 64 -> 1"
    assert row["ratio"] == pytest.approx(row["one_after_the_other_s"] / row["side_by_side_s"], rel=0.01)
    capsys.readouterr()
    argv = ["compiler_options.py", "--n", "8", "--epochs", "3", "--drop", "xla_cpu_use_fusion_emitters"]
    monkeypatch.setattr(sys, "argv", argv)
    compiler_options.main()
    stdout = capsys.readouterr().out
    assert "'xla_cpu_use_fusion_emitters'" not in stdout.split("variant:")[1].splitlines()[0]
    assert "N =     8: engine" in stdout and "engine / variant" in stdout


def test_kill_resume_names_what_a_damaged_run_folder_lacks(tmp_path, binary_data):
    """benchmarks/kill_resume.py's check: a copy of the reference passes; a truncated history.csv, a missing
    table.parquet, a missing plot and a kept model holding another trial's weights are each named."""
    kill_resume = import_benchmark("kill_resume")
    reference, copy = tmp_path / "reference", tmp_path / "copy"
    sweep = dict(model=MLP(hidden=(4,)), space={"learning_rate": [1e-2, 1e-1]}, strategy=sweeps.Grid(), epochs=2)
    sweeps.run(binary_data, run_dir=reference, keep_models=2, **sweep)
    shutil.copytree(reference, copy)
    comparer = kill_resume.Comparer(reference, binary_data)
    assert comparer.differences(copy) == [] and kill_resume.missing_files(copy) == []

    history = (copy / "history.csv").read_bytes()
    (copy / "history.csv").write_bytes(history[: len(history) // 2])
    (copy / "table.parquet").unlink()
    plot = comparer.plots[0]
    (copy / "plots" / plot).unlink()
    first, second = comparer.trials
    shutil.rmtree(copy / "models" / f"trial_{first}")
    shutil.copytree(copy / "models" / f"trial_{second}", copy / "models" / f"trial_{first}")
    found = comparer.differences(copy)
    # the checksum in models.json catches the swap (issue 20 item 14): the model does not load, named
    assert any(f.startswith(f"model trial {first} does not load (") for f in found), found
    # with its checksum swapped too, the model loads and its probabilities differ from the reference's
    index = json.loads((copy / "models" / "models.json").read_text())
    sums = {entry["trial"]: entry["checksum"] for entry in index["trials"]}
    for entry in index["trials"]:
        entry["checksum"] = sums[second] if entry["trial"] == first else entry["checksum"]
    (copy / "models" / "models.json").write_text(json.dumps(index))
    found = comparer.differences(copy)
    assert f"history.csv differs (bytes {len(history) // 2} vs {len(history)}, first at {len(history) // 2})" in found
    assert "table.parquet unreadable (FileNotFoundError)" in found
    assert any(f.startswith(f"model trial {first}: probabilities differ (max ") for f in found), found
    assert not any(f.startswith(f"model trial {second}") for f in found), found
    assert f"plots: [{plot!r}] missing or empty" in found
    assert kill_resume.missing_files(copy, comparer.plots) == [
        "table.parquet missing",
        f"plots 1 of {len(comparer.plots)} missing or empty",
    ]


def test_tracker_export_times_an_export_and_an_export_again_that_writes_nothing(tmp_path, monkeypatch, capsys):
    tracker_export = import_benchmark("tracker_export")
    monkeypatch.chdir(tmp_path)  # the script works in its --out folder (MLflow's artifacts go to ./mlruns)
    argv = ["--trials", "6", "--epochs", "1", "--to", "tensorboard", "--run-dir", str(tmp_path / "run")]
    assert tracker_export.main([*argv, "--out", str(tmp_path / "out")]) == 0  # mlflow's: tests/test_mlflow.py
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [(r["to"], r["what"], r["trials"]) for r in rows] == [
        ("tensorboard", "export", 6),
        ("tensorboard", "re-export", 6),
    ]
    assert rows[0]["values"] == 6 * 4 + 2 * 6 and rows[1]["values"] == 0  # 4 metrics an epoch, value, best_epoch


def test_roofline_counts_the_lessons_unfused_step_from_its_shapes():
    """Issue 25: the lesson's member (45 -> 64 -> 1, Adam, batch 32) counted by hand here, independently of
    epoch_cost: P parameters; an unfused update reads P parameters, P gradients and Adam's 2P + 1 state and
    writes P parameters and 2P + 1 state, in float32."""
    epoch_cost, workloads = import_benchmark("epoch_cost"), import_benchmark("workloads")
    lesson = workloads.make_workloads()["lesson"]
    p = 45 * 64 + 64 + 64 * 1 + 1
    step_bytes = 4 * (3 * p + 2 * (2 * p + 1))
    steps = -(-5634 // 32)
    roof = epoch_cost.roofline(lesson)
    assert (p, steps, lesson.steps_per_epoch) == (3009, 177, 177)
    assert roof["roofline_params"] == p and roof["roofline_opt_state_words"] == 2 * p + 1
    assert roof["unfused_step_bytes"] == step_bytes == 84_260 and roof["unfused_step_words"] == 7 * p + 2
    assert roof["unfused_epoch_bytes"] == steps * step_bytes  # 14.91 MB
    assert 107e6 < roof["roofline_flops"] < 110e6  # 3 x 2 x 2,944 x 5,664 training rows + 2 x 2,944 x 1,409
    row = {"model_epochs_per_s": 250.0, **roof}
    rates = epoch_cost.roofline_rates(row, matmul_gflops=135.0, copy_gbs=40.9)
    assert rates["unfused_gbs"] == pytest.approx(250 * 14.914020e6 / 1e9)
    assert 0 < rates["unfused_bandwidth_fraction"] < 1 and 0 < rates["roofline_peak_fraction"] < 1
    # the H200's best copy in its rows (3,160 GB/s): about 212,000 model-epochs/s for an unfused step
    h200 = epoch_cost.roofline_rates(row, matmul_gflops=352_483.0, copy_gbs=3160.4)
    assert h200["unfused_roof_model_epochs_per_s"] == pytest.approx(211_908, rel=1e-3)


def test_profile_epoch_summarizes_a_gpu_trace_by_its_streams():
    """A Chrome trace laid out as JAX writes a GPU's: kernels on the device's streams, a derived "XLA Ops" line
    that repeats them (not counted twice), host events; the gaps are the stream's idle time inside its span."""
    profile_epoch = import_benchmark("profile_epoch")

    def meta(kind, pid, name, tid=None):
        lane = {} if tid is None else {"tid": tid}
        return {"ph": "M", "name": kind, "pid": pid, **lane, "args": {"name": name}}

    def op(tid, name, ts, dur, pid=2):
        return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur}

    events = [
        meta("process_name", 1, "/host:CPU"),
        meta("thread_name", 1, "python", 7),
        meta("process_name", 2, "/device:GPU:0"),
        meta("thread_name", 2, "Stream #13(Compute)", 13),
        meta("thread_name", 2, "XLA Ops", 99),
        op(7, "PjitFunction(epoch)", 0.0, 100.0, pid=1),
        *(op(13, name, ts, 10.0) for name, ts in (("fusion_1", 10.0), ("gemm", 25.0), ("fusion_1", 40.0))),
        op(99, "fusion_1", 10.0, 40.0),
    ]
    summary = profile_epoch.summarize(events, top=2)
    assert summary["timeline"] == "device streams" and summary["lanes"] == ["/device:GPU:0 / Stream #13(Compute)"]
    assert (summary["kernel_launches"], summary["distinct_kernels"], summary["host_gaps"]) == (3, 2, 2)
    assert summary["busy_s"] == pytest.approx(30e-6) and summary["span_s"] == pytest.approx(40e-6)
    assert summary["host_gaps_s"] == pytest.approx(10e-6) and summary["largest_gap_us"] == pytest.approx(5.0)
    assert [(k["name"], k["launches"]) for k in summary["top"]] == [("fusion_1", 2), ("gemm", 1)]
    assert profile_epoch.summarize([meta("process_name", 1, "/host:CPU")])["timeline"] is None


def test_profile_epoch_profiles_one_lesson_epoch_on_the_cpu(tmp_path, capsys):
    """`profile_epoch.py --n 4` in this process: a CPU has no device lane, so the XLA thunks on the host's threads
    are the timeline (a `while` thunk's body charged to the body's ops)."""
    profile_epoch = import_benchmark("profile_epoch")
    out = tmp_path / "profile.json"
    argv = ["--n", "4", "--repeats", "1", "--trace-dir", str(tmp_path / "trace"), "--out", str(out)]
    assert profile_epoch.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 4 and result["epoch_s"] > 0 and result["traced_epoch_s"] > 0
    assert result["timeline"].startswith("host threads") and result["kernel_launches"] > result["steps_per_epoch"]
    assert 0 < result["busy_s"] <= result["span_s"] and len(result["top"]) == 15
    assert result["unfused_epoch_bytes"] == 177 * 84_260
    assert "| epoch wall time, untraced (median of 1) |" in capsys.readouterr().out
