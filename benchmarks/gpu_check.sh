#!/usr/bin/env bash
# One GPU session's checks for sweepax, in about 7 minutes at most. From the repository root:
#
#     bash benchmarks/gpu_check.sh
#
# 1. the GPU (nvidia-smi), python / jax / flax / optax versions, jax.devices();
# 2. `python -m pip install --no-deps -e .` (no network there: no build isolation, no index);
# 3. benchmarks/throughput.py, workloads lesson and wide, modes sequential and vmap,
#    N = 1 8 64 256 1024 4096 16384 (sizes whose memory estimate exceeds the GPU's free memory,
#    or whose predicted time exceeds --budget-s, are written as skipped rows);
# 4. python -m pytest -q -x tests/test_engine.py tests/test_memory.py;
# 5. LAST, a markdown table of the results (also written to gpu-summary.md).
#
# Everything goes under $OUT (or benchmarks/results when OUT is unset), 7 files at most:
# gpu-check.log (all of this output), gpu-{lesson,wide}.jsonl and .png, gpu-tests.log, gpu-summary.md.
# Each part runs under `timeout`, within an overall deadline (DEADLINE_S, default 400 s) that
# leaves time for the summary, so a hang cannot eat the session.
#
# Environment knobs: QUICK=1 (a CPU smoke run: N 1 and 8, one epoch, tests/test_memory.py only,
# no install), INSTALL=1|dry|0 (default 1, QUICK: 0; dry = pip --dry-run), PYTHON=..., TESTS="...",
# DEADLINE_S=..., WORKLOADS="lesson wide" (the throughput parts to run; default none), KERNEL=1|0 (default 1:
# benchmarks/kernel_paths.py, the XLA path against the Pallas kernel, lesson and wide, float32 and bfloat16,
# N 4,096-65,536, with the members' equivalence on the card, into gpu-kernel.jsonl; then
# benchmarks/profile_epoch.py at N = 16,384 on the XLA path into gpu-profile.json).

set -u -o pipefail
export PYTHONUNBUFFERED=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, installed or not

DEST=${OUT:-$ROOT/benchmarks/results}
mkdir -p "$DEST" || exit 1
QUICK=${QUICK:-0}
DEADLINE_S=${DEADLINE_S:-520}
WORKLOADS=${WORKLOADS-}  # the throughput parts (XLA path against sequential): "lesson wide" to run them
KERNEL=${KERNEL:-1}      # issue 25: benchmarks/kernel_paths.py (XLA path against the Pallas kernel) and a profile

if [[ $QUICK == 1 ]]; then
    NS="1 8"
    LESSON_ARGS="--epochs 1 --budget-s 20 --sequential-trials 2"
    WIDE_ARGS="--epochs 1 --budget-s 10 --sequential-trials 2"
    TESTS=${TESTS:-tests/test_memory.py}
    INSTALL=${INSTALL:-0}
else
    NS="1 8 64 256 1024 4096 16384"
    # lesson: 177 steps/epoch of a 45->64->1 MLP, cheap at every N: compile time dominates.
    LESSON_ARGS="--epochs 3 --budget-s 60"
    # wide: 313 steps/epoch, ~270 GFLOP and (XLA's count) ~30 GB of traffic per member-epoch, so
    # N=1024 is ~280 TFLOP and ~30 TB an epoch: seconds per epoch. N=4096 (110 GiB by the estimate)
    # and 16384 (440 GiB) do not fit and are skipped; --budget-s 75 also skips any N whose
    # predicted (1 + epochs) epochs + compile exceed 75 s.
    WIDE_ARGS="--epochs 2 --budget-s 75"
    TESTS=${TESTS:-tests/test_kernel.py tests/test_engine.py tests/test_memory.py}
    INSTALL=${INSTALL:-1}
fi

STATUS=()  # one line per part, printed before the table
LAST_RC=0  # the last part's exit status

# part NAME CAP_S RESERVE_S LOG command...: runs command under `timeout`, for at most CAP_S seconds
# and never into the last RESERVE_S seconds before the deadline; LOG "-" means the main log only.
part() {
    local name=$1 cap=$2 reserve=$3 log=$4
    shift 4
    local left=$((DEADLINE_S - SECONDS - reserve))
    ((cap > left)) && cap=$left
    if ((cap < 10)); then
        echo "== $name: not run, only ${left}s left before the ${DEADLINE_S}s deadline (reserve ${reserve}s)"
        STATUS+=("$name: not run (deadline)")
        LAST_RC=-1
        return 0
    fi
    echo
    echo "== $name (timeout ${cap}s, t=${SECONDS}s): $*"
    local start=$SECONDS rc
    if [[ $log == - ]]; then
        timeout -k 10 "$cap" "$@" 2>&1
        rc=$?
    else
        timeout -k 10 "$cap" "$@" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    LAST_RC=$rc
    local took=$((SECONDS - start)) what="rc $rc"
    ((rc == 124 || rc == 137)) && what="TIMED OUT after ${cap}s (rc $rc)"
    echo "== $name: $what, ${took}s"
    STATUS+=("$name: $what, ${took}s")
    return 0
}

main() {
    echo "sweepax gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "QUICK=$QUICK, out $DEST, deadline ${DEADLINE_S}s"

    # ---------------------------------------------------------------- the machine
    if command -v nvidia-smi >/dev/null; then
        timeout 20 nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm --format=csv
    else
        echo "note: no nvidia-smi here"
    fi

    PY=${PYTHON:-}
    if [[ -z $PY ]]; then
        for candidate in python3 python; do
            if command -v "$candidate" >/dev/null && timeout 60 "$candidate" -c "import jax" 2>/dev/null; then
                PY=$candidate
                break
            fi
        done
    fi
    if [[ -z $PY ]]; then
        echo "ERROR: neither python3 nor python imports jax here"
        STATUS+=("python: no interpreter with jax")
        PY=python3
    fi
    echo "python: $(command -v "$PY")"

    local info
    info=$(timeout 90 "$PY" - <<'PYEOF' 2>&1
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("jax", "jaxlib", "flax", "optax", "numpy", "pandas", "orbax.checkpoint"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name} NOT IMPORTABLE ({type(error).__name__}: {error})")
missing = []
for name in ("pyarrow", "matplotlib", "tqdm", "pytest"):
    try:
        importlib.import_module(name)
    except Exception:
        missing.append(name)
print("missing modules:", " ".join(missing) or "none")
import jax
print("jax.devices():", jax.devices())
print("jax.default_backend():", jax.default_backend())
stats = jax.devices()[0].memory_stats()
if stats:
    print(f"memory_stats: bytes_limit {stats.get('bytes_limit', 0) / 2**30:.1f} GiB, "
          f"bytes_in_use {stats.get('bytes_in_use', 0) / 2**30:.2f} GiB")
PYEOF
    )
    local rc=$?
    echo "$info"
    STATUS+=("versions: rc $rc")
    MISSING=$(sed -n 's/^missing modules: //p' <<<"$info")
    [[ $MISSING == none ]] && MISSING=""
    if grep -q "^jax.default_backend(): cpu" <<<"$info" && [[ $QUICK != 1 ]]; then
        echo "WARNING: jax sees no GPU here; the benchmark below runs on the CPU (budget skips will cut it short)"
    fi

    # ---------------------------------------------------------------- install
    case $INSTALL in
    1) part install 90 300 - "$PY" -m pip install -q --no-deps --no-build-isolation --no-index \
        --disable-pip-version-check --root-user-action=ignore -e . ;;
    dry) part "install (dry run)" 90 300 - "$PY" -m pip install -q --dry-run --no-deps --no-build-isolation \
        --no-index --disable-pip-version-check -e . ;;
    *) echo "note: install skipped (INSTALL=$INSTALL); PYTHONPATH=$ROOT serves this checkout's code" ;;
    esac
    if [[ $INSTALL == 1 || $INSTALL == dry ]] && ((LAST_RC != 0)); then
        echo "note: the install failed (rc $LAST_RC); going on: PYTHONPATH=$ROOT serves this checkout's code"
    fi

    # ---------------------------------------------------------------- benchmarks
    # matplotlib missing: throughput.py prints a note and draws no plot (its rows are unaffected).
    [[ " $MISSING " == *" matplotlib "* ]] && echo "note: matplotlib is missing: no PNG plots"
    # sequential first: on a GPU peak memory is the process's peak so far, so the one-member runs
    # are measured before any large population; vmap N then grows, so each row's peak is its own.
    if [[ $KERNEL == 1 ]]; then
        local kernel_args=(--out "$DEST/gpu-kernel.jsonl")
        [[ $QUICK == 1 ]] && kernel_args+=(--quick --precision float32)
        part "kernel paths" 260 150 - "$PY" benchmarks/kernel_paths.py "${kernel_args[@]}"
        local profile_n=16384
        [[ $QUICK == 1 ]] && profile_n=8
        part "profile" 60 120 - "$PY" benchmarks/profile_epoch.py --n "$profile_n" --out "$DEST/gpu-profile.json"
    fi
    if [[ " $WORKLOADS " == *" lesson "* ]]; then
        # shellcheck disable=SC2086
        part "throughput lesson" 150 200 - "$PY" benchmarks/throughput.py --workload lesson --mode sequential vmap \
            --n $NS $LESSON_ARGS --out "$DEST/gpu-lesson.jsonl"
    fi
    if [[ " $WORKLOADS " == *" wide "* ]]; then
        # shellcheck disable=SC2086
        part "throughput wide" 170 90 - "$PY" benchmarks/throughput.py --workload wide --mode sequential vmap \
            --n $NS $WIDE_ARGS --out "$DEST/gpu-wide.jsonl"
    fi

    # ---------------------------------------------------------------- tests
    if [[ " $MISSING " == *" pytest "* ]]; then
        echo "note: pytest is missing: tests not run"
        STATUS+=("tests: not run (no pytest)")
    else
        local deselect=()
        if [[ " $MISSING " == *" pyarrow "* || " $MISSING " == *" matplotlib "* ]]; then
            # these write a run folder (parquet files, plots); the rest of the engine's tests do not
            echo "note: pyarrow or matplotlib is missing: deselecting the tests that write a run folder"
            deselect=(-k "not (lr_sweep_on_churn or run_folder_round_trips or strategy_of_the_users_own)")
        fi
        # shellcheck disable=SC2086
        # full float32 matmuls: the equivalence tests compare paths whose TF32 roundings differ (the kernel's Triton
        # products and XLA's); every file runs (no -x): one failure does not hide the others; one process (no
        # pytest-xdist workers, each of which would claim the GPU's memory: -o addopts= drops the project's -n auto)
        part tests 150 25 "$DEST/gpu-tests.log" env JAX_DEFAULT_MATMUL_PRECISION=highest "$PY" -m pytest -q \
            -o addopts= -p no:cacheprovider ${deselect[@]+"${deselect[@]}"} $TESTS
        local summary
        summary=$(grep -E "(passed|failed|error|no tests ran)" "$DEST/gpu-tests.log" 2>/dev/null | tail -1)
        STATUS+=("tests result: ${summary:-no summary line (see gpu-tests.log)}")
    fi

    # ---------------------------------------------------------------- summary, last
    echo
    echo "== parts (t=${SECONDS}s)"
    printf -- "- %s\n" "${STATUS[@]}"
    echo
    timeout 30 "$PY" - "$DEST" <<'PYEOF'
import json
import sys
from pathlib import Path

dest = Path(sys.argv[1])
rows = []
for name in ("gpu-lesson.jsonl", "gpu-wide.jsonl"):
    path = dest / name
    if not path.exists():
        print(f"note: no {name}")
        continue
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut off by a timeout

def rate(workload, mode, n):
    for r in rows:
        if (r.get("workload"), r.get("mode"), r.get("n")) == (workload, mode, n) and not r.get("skipped"):
            return r.get("model_epochs_per_s")
    return None

lines = []
if rows:
    first = rows[0]
    peak = max((r.get("matmul_peak_gflops") or 0) for r in rows)
    bandwidth = max((r.get("mem_bandwidth_gbs") or 0) for r in rows)
    lines.append(f"device: {first.get('device')} ({first.get('backend')}), jax {first.get('jax')}, "
                 f"commit {first.get('engine_commit')}; matmul {peak:.4g} GFLOP/s (float32 jnp.dot), "
                 f"copy {bandwidth:.4g} GB/s (the best samples of the run)")
    lines.append("")
lines.append("| workload | mode | N | model-epochs/s | compile s | peak MB | % of copy bandwidth (unfused traffic) "
             "| vmap / sequential |")
lines.append("|---|---|---|---|---|---|---|---|")
for r in rows:
    w, m, n = r.get("workload"), r.get("mode"), r.get("n")
    if r.get("skipped"):
        lines.append(f"| {w} | {m} | {n} | skipped: {r['skipped']} | | | | |")
        continue
    timed = f" ({r.get('timed_trials')} timed, extrap.)" if r.get("extrapolated") else ""
    speedup = ""
    if m == "vmap":
        seq = rate(w, "sequential", n)
        speedup = f"{r['model_epochs_per_s'] / seq:.3g}x" if seq else ""
    bw = r.get("unfused_bandwidth_fraction")  # the traffic from the shapes (issue 25), not XLA's bytes accessed
    lines.append(f"| {w} | {m} | {n} | {r['model_epochs_per_s']:.4g}{timed} | {r.get('compile_s', float('nan')):.2f} "
                 f"| {r.get('peak_mem_mb', float('nan')):.0f} | {'' if bw is None else f'{100 * bw:.2g}'} | {speedup} |")
kernel = dest / "gpu-kernel.jsonl"
if kernel.exists():
    lines += ["", "| workload | precision | path | N | model-epochs/s | % of copy bandwidth (unfused traffic) | "
              "compile s |", "|---|---|---|---|---|---|---|"]
    for line in kernel.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("check") == "equivalence":
            lines.append(f"equivalence {r.get('workload')} {r.get('precision')}: " + (r.get("error") or
                         f"N={r.get('n')}, max |kernel - XLA| {r.get('max_abs_param_difference')}, "
                         f"same diverged: {r.get('same_diverged')}"))
            continue
        got = r.get("model_epochs_per_s")
        bw = r.get("unfused_bandwidth_fraction")
        lines.append(f"| {r.get('workload')} | {r.get('precision')} | {r.get('path')} | {r.get('n', '')} | "
                     f"{f'{got:,.0f}' if got else r.get('skipped') or r.get('error')} | "
                     f"{'' if bw is None else f'{100 * bw:.3g}'} | {r.get('compile_s', '')} |")
text = "\n".join(lines)
(dest / "gpu-summary.md").write_text(text + "\n")
print(text)
PYEOF
}

main "$@" 2>&1 | tee "$DEST/gpu-check.log"
