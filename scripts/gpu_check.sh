#!/usr/bin/env bash
# The checks and timings a lent GPU session runs, in one call (docs/gpu.md): the CUDA tests, a cohort
# sweep eager vs CUDA graph (every member's test score compared), then what a cohort's step costs
# (benchmark/gpu_cohort.py), each part capped so the rest still runs. Writes under $OUT.
#   OUT=/tmp/gpu PY=python3 bash scripts/gpu_check.sh
set -u
OUT=${OUT:-results/gpu-check}
PY=${PY:-.venv/bin/python}
SWEEPS=${SWEEPS:-$OUT/sweeps}  # run folders (many files): elsewhere when only a few files may come back
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"

echo "== 1. CUDA tests"
timeout "${TEST_S:-170}" $PY -m pytest -q -m gpu -n 4 -rs tests/test_train_cohort.py tests/test_accel.py > "$OUT/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "passed|failed|error" "$OUT/pytest.log" | tail -3; grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20

[ "${SWEEPS_TOO:-1}" = 1 ] && {
echo "== 2. a cohort sweep on CUDA, eager and graphed"
for a in none graph; do
  timeout "${SWEEP_S:-75}" $PY -m benchmark.run --multirun +experiment=smoke device=cuda accel=$a sweep=smoke_$a \
    results_dir="$SWEEPS" task.seq_len=10 > "$OUT/sweep_$a.log" 2>&1
  echo "sweep accel=$a rc=$?"
done
$PY - "$SWEEPS" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
def scores(name):
    out = {}
    for f in (root / name).rglob("metrics.json"):
        r = json.loads(f.read_text())
        out[(r.get("cell"), r.get("reg"), r.get("seq_len"), r.get("seed"))] = (r.get("status"), r.get("test_score"), r.get("cohort_mode"), r.get("compile_s"))
    return out
e, g = scores("smoke_none"), scores("smoke_graph")
print(f"records: eager {len(e)}, graph {len(g)}; statuses {sorted({v[0] for v in g.values()})}; modes {sorted({str(v[2]) for v in g.values()})}")
worst = max((abs(e[k][1] - g[k][1]) / max(abs(e[k][1]), 1e-12) for k in e if k in g and e[k][1] is not None and g[k][1] is not None), default=None)
print("largest relative test-score difference graph vs eager:", worst)
PY
}

echo "== 2b. two jobs of the full grid (15 members each, 100 steps): what a job costs beyond its steps"
jobs=("cell=lstm reg=bn task.seq_len=1000" "cell=gru reg=dropout task.seq_len=100")
for job in "${jobs[@]:0:${FULL_JOBS:-2}}"; do
  timeout "${JOB_S:-150}" $PY -m benchmark.run --multirun +experiment=full regime=full_adding $job train.steps=100 \
    sweep=full_probe results_dir="$SWEEPS" > "$OUT/full_probe.log" 2>&1
  echo "full job $job rc=$?"
done
$PY - "$SWEEPS/full_probe" <<'PY'
import json, sys
from pathlib import Path
jobs = {}
for f in Path(sys.argv[1]).rglob("metrics.json"):
    r = json.loads(f.read_text())
    key = (r["cell"], r["reg"], r["seq_len"])
    jobs.setdefault(key, []).append(r)
for key, rs in sorted(jobs.items()):
    r = rs[0]
    print(key, f"members {len(rs)} status {sorted({x['status'] for x in rs})} mode {r.get('cohort_mode')}",
          f"cohort_wall_s {(r.get('env') or {}).get('cohort_wall_s')}",
          f"cohort step ms {sum(1e3 * 64 * x['seq_len'] / x['train_tokens_per_s'] for x in rs if x.get('train_tokens_per_s')):.1f}",
          f"compile_s {r.get('compile_s')} steps {r.get('steps_done')}")
PY

[ "${TIMING:-1}" = 1 ] || exit 0
echo "== 3. cohort step costs"
J="$OUT/gpu_cohort.json"
run() { timeout "$1" $PY -m benchmark.gpu_cohort --out "$J" --append --deadline-s "$2" "${@:3}" 2>&1 | grep -v Warning; }
run 90 70 --accels graph --eval --seq-lens 100 1000
run 70 50 --accels none --solo --seq-lens 100 1000 --warmup 1 --repeats 3
run 50 35 --accels graph --members 20 --hidden 32 --batch 32 --seq-lens 100 1000
run 50 35 --accels graph --eval --seq-lens 300 --arms none bn dropout both ln zoneout
run 40 25 --accels graph --eval --seq-lens 100 1000 --arms ln zoneout
echo "== done"
