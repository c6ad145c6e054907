#!/bin/bash
# Issue 13 campaign 5: before = 7115503 (worktree /tmp/base), after = the working tree at /work/main.
# Alternates before/after; logs load averages.
set -u
B=/tmp/base; A=/work/main
cd /work/main
stamp() { echo "=== $(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) :: $*"; }
tp() { # $1 label $2 root
  stamp "throughput $1"
  (cd $2 && PYTHONPATH=$2 python benchmarks/throughput.py --workload lesson --n 256 --out /tmp/w/c5-$1-$(date +%s).jsonl 2>&1 | grep -v Warn | grep -E "model-epochs/s|chunks of|against|matmul peak")
}
three() {
  stamp "churn_three cold $1"
  rm -rf /tmp/w/c5three
  (cd $2 && SWEEPS_CACHE_DIR=off PYTHONPATH=$2 /usr/bin/time -f "  process %e s, %M KB" python -m sweeps.cli run data/examples/churn_three.toml --out /tmp/w/c5three --quiet --overwrite 2>&1 | tail -1)
  python -c "import json; c=json.load(open('/tmp/w/c5three/config.json')); print('  wall_s', c['wall_s'], 'compile_s', c['compile_s'], 'lanes', c.get('lanes'))"
}
e2e() {
  stamp "end to end $1"
  (cd $2 && OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$2 python benchmarks/throughput.py --end-to-end 256 --epochs 20 --out /tmp/w/c5e2e-$1-$(date +%s).jsonl 2>&1 | grep -E "sweeps.run |torch-vmap |ratio")
}
lr() {
  stamp "churn_lr cold $1"
  rm -rf /tmp/w/c5lr
  (cd $2 && SWEEPS_CACHE_DIR=off PYTHONPATH=$2 /usr/bin/time -f "  process %e s, %M KB" python -m sweeps.cli run data/examples/churn_lr.toml --out /tmp/w/c5lr --quiet --overwrite 2>&1 | tail -1)
  python -c "import json; c=json.load(open('/tmp/w/c5lr/config.json')); print('  wall_s', c['wall_s'], 'compile_s', c['compile_s'], 'lanes', c.get('lanes'))"
  cp /tmp/w/c5lr/table.csv /tmp/w/c5lr-$1.csv
}
for r in 1 2; do
  tp before $B; tp after $A
  three before $B; three after $A
done
  lr before $B; lr after $A
e2e before $B; e2e after $A; e2e after $A
tp after $A
stamp "lanes --split (after)"
(cd $A && python benchmarks/lanes.py --split --n 32 64 128 256 --epochs 3 --repeats 3 2>&1 | grep -v Warn)
stamp done
