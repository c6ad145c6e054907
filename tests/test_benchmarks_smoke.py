"""Smoke test of benchmarks/throughput.py: the --quick subset runs and writes well-formed rows."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    "bandwidth_fraction",
    "matmul_peak_gflops",
    "mem_bandwidth_gbs",
    "timed_trials",
    "extrapolated",
}


def test_quick_run_writes_rows_with_every_key(tmp_path):
    out = tmp_path / "quick.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
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
    assert "| lesson | vmap | 8 |" in done.stdout  # the markdown table
    against = r"lesson N=8: against sequential: vmap [\d.]+x, lanes [\d.]+x, \(lanes against sequential-lanes [\d.]+x\)"
    assert re.search(against, done.stdout), done.stdout[-1500:]
    assert out.with_suffix(".png").stat().st_size > 0  # the plot


def test_a_population_whose_estimate_exceeds_free_memory_is_a_skipped_row(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import throughput
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    lesson = throughput.make_workloads()["lesson"]
    sizes = {
        n: throughput.memory.population_bytes(lesson.structure(), n, lesson.data.n_train, lesson.data.n_val)
        for n in (1, 8)
    }
    free = (sizes[1] + sizes[8]) // 2  # room for N=1, not for N=8
    monkeypatch.setattr(throughput.memory, "available_bytes", lambda device=None: free)
    monkeypatch.setattr(throughput, "plot", lambda *a, **k: None)
    out = tmp_path / "fit.jsonl"
    assert throughput.main(["--quick", "--out", str(out)]) == 0
    rows = {(r["mode"], r["n"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert "skipped" not in rows["vmap", 1] and rows["vmap", 1]["memory_estimate_mb"] == sizes[1] / 2**20
    skip = rows["vmap", 8]["skipped"]
    assert skip.startswith("memory estimate ") and " GiB > available " in skip and skip.endswith(" GiB"), skip
    assert "skipped" not in rows["sequential", 8]  # one member at a time: no population of 8 is built


def test_strategies_quick_run_writes_one_row_per_strategy_with_a_curve(tmp_path):
    out = tmp_path / "strategies.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "strategies.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["strategy"] for r in rows] == [
        "grid",
        "random",
        "quasirandom",
        "bayes",
        "sequential",
        "halving",
        "halving-refill",
        "pbt",
    ]
    for row in rows:
        assert row["data"] == "diabetes" and row["trials"] == len(row["curve"]) and row["allotted"] == 24
        assert row["best"] == min(row["curve"]) and 0 < row["model_epochs"] <= 1.25 * 24  # refill may run over
        assert row["trials"] == (
            8
            if row["strategy"] in ("grid", "random", "quasirandom", "bayes", "sequential")
            else {"halving": 14, "halving-refill": 14, "pbt": 2}[row["strategy"]]
        )
        assert row["compilations"] >= 1 and row["wall_s"] > 0
    assert {r["rounds"] for r in rows if r["strategy"] == "bayes"} == {4}
    assert "| diabetes | bayes | 8 |" in done.stdout
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".md").is_file()


def test_devices_measures_a_population_sharded_over_forced_host_devices(tmp_path):
    out = tmp_path / "devices.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--devices", "2", "--n", "3"]
    done = subprocess.run(
        [*command, "--epochs", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["devices"], row["n"], row["population"], row["per_device"]) == (2, 3, 4, 2)  # padded to 4
    assert row["model_epochs_per_s"] > 0 and row["vs_fewest_devices"] == 1.0
    assert "| 2 | 3 | 2 |" in done.stdout  # the markdown table


def test_lanes_and_compiler_options_quick_runs_print_their_rows(tmp_path):
    out = tmp_path / "lanes.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "lanes.py"), "--n", "4", "--batches", "16,32"]
    done = subprocess.run(
        [*command, "--epochs", "1", "--repeats", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["n"] == 4 and row["batch_sizes"] == [16, 32]
    assert row["parameters"] == 4 * (45 * 64 + 64 + 64 + 1), "four members of the lesson MLP 45 -> 64 -> 1"
    assert row["ratio"] == pytest.approx(row["one_after_the_other_s"] / row["side_by_side_s"], rel=0.01)
    command = [sys.executable, str(ROOT / "benchmarks" / "compiler_options.py"), "--n", "2", "--epochs", "3"]
    done = subprocess.run(
        [*command, "--drop", "xla_cpu_use_fusion_emitters"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "'xla_cpu_use_fusion_emitters'" not in done.stdout.split("variant:")[1].splitlines()[0]
    assert "N =     2: engine" in done.stdout and "engine / variant" in done.stdout
