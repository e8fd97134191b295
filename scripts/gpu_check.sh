#!/usr/bin/env bash
# One device session in one call (docs/gpu.md), in this order, each part capped and all within TOTAL_S seconds:
#   ptb     ptb_small (Zaremba et al. 2014's recipe) to its end, 3 seeds at once (docs/ptb.md)
#   medium  ptb_medium probed for its step cost: its wall time estimated
#   pmnist  the pMNIST control, LSTM vs BN-LSTM, 10 seeds per arm as CUDA-graph stacks (pmnist_control)
#   bench   `make bench-gpu` in fp32 and in bf16: every cell x variant against cuDNN
#   sweep   `make sweep` of claims_gpu scaled to the window (claims_gpu_probe), to its report
#   jobs    whole claims_gpu cohort jobs, one per regime x length (cheapest first, while they fit), and the
#           estimate rebuilt from them (benchmark/perf/estimate_jobs.py)
#   medium_full  ptb_medium to its end (dropout 0.5 and 0), only when the time left holds its estimate
# A part the time left cannot hold is skipped; the closing note (benchmark/analysis/gpu_note.py) says what ran.
# What comes back is OUT (at most 8 files): note.md, bench_fp32.json, bench_bf16.json, pmnist_curves.csv and
# records.tar.gz (every record, history, log and the report). Run folders go to WORK.
#   On a GPU:   OUT=/tmp/out PY=python3 MNIST=.devcarry/mnist bash scripts/gpu_check.sh
#   Dry run:    DRY=1 OUT=/tmp/out MNIST=<a folder of IDX files> bash scripts/gpu_check.sh   (CPU, tiny sizes;
#               tests/test_gpu_check.py runs it in `make test`)
#   A subset:   PARTS="bench jobs" ...
set -u
OUT=${OUT:-results/gpu-check}
PY=${PY:-.venv/bin/python}
DRY=${DRY:-0}
TOTAL_S=${TOTAL_S:-560}          # the whole script; the device allows 600 s a command
RESERVE_S=${RESERVE_S:-20}       # kept back for the note and the archive
WORK=${WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
MNIST=${MNIST:-.devcarry/mnist}
PARTS=${PARTS:-"ptb medium pmnist bench sweep jobs medium_full"}
PMNIST_STEPS=${PMNIST_STEPS:-600}
SWEEP_STEPS=${SWEEP_STEPS:-40}
SWEEP_JOBS=${SWEEP_JOBS:-8}      # parallel jobs of the scaled sweep on the one GPU (launch-bound, 16 cores)
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK/logs"
: > "$WORK/parts.tsv"
START=$SECONDS

if [ "$DRY" = 1 ]; then  # CUDA absent: the same commands on the CPU, at tiny sizes
  DEV=(device=cpu accel=none threads=1)
  PTB=(task.n_train=3000 task.n_val=200 task.n_test=200 hidden_size=8 train.steps=4 train.eval_interval=2
       train.lr_decay_every=2 train.lr_decay_after=1 train.log_interval=1 timing.warmup=0 timing.repeats=1)
  PMNIST=(task.seq_len=28 task.n_train=40 task.n_val=16 task.n_test=12 hidden_size=8 train.batch_size=8
          train.eval_interval=2 seed=0,1,2)
  PMNIST_STEPS=4
  BENCH="--device cpu --threads 1 --hidden 8 --batch 4 --input 3 --seq-lens 5 --cells lstm --repeats 2 --rounds 1 --warmup 0"
  BENCH+=" --variants bn.recurrent dropout.variational"
  SWEEP=(smoke)  # the user's path at the smoke grid; claims_gpu_probe's config is checked by its own test
  JOBS=(hidden_size=4 train.batch_size=8 train.steps=2 train.eval_interval=2 timing.warmup=0 timing.repeats=1
        task.n_train=32 task.n_val=16 task.n_test=16)
  MEMBERS="--members 2"; JOBS_MAX=2; MEDIUM=(task.n_val=200 task.n_test=200 hidden_size=8); MEDIUM_STEPS=3; LAUNCH=basic
else
  DEV=(device=cuda); PTB=(); PMNIST=(); BENCH="--seq-lens 100 --accel graph --repeats 9 --rounds 3 --warmup 2"
  SWEEP=(claims_gpu_probe); JOBS=(); MEMBERS=""; JOBS_MAX=99; MEDIUM=(); MEDIUM_STEPS=300; LAUNCH=joblib
fi

left() { echo $((TOTAL_S - (SECONDS - START) - RESERVE_S)); }
wanted() { [[ " $PARTS " == *" $1 "* ]]; }
# part NAME CAP MIN CMD...: run CMD under min(CAP, time left) seconds if at least MIN are left; one row of parts.tsv
part() {
  local name=$1 cap=$2 min=$3; shift 3
  wanted "${name%%[0-9]*}" || return 0  # jobs1, jobs2, ...: part `jobs`
  local l; l=$(left); [ "$cap" -gt "$l" ] && cap=$l
  if [ "$cap" -lt "$min" ]; then printf '%s\tskipped: %ss left, needs %ss\t0\t%s\n' "$name" "$l" "$min" "$cap" >> "$WORK/parts.tsv"; return 0; fi
  echo "== $name (cap ${cap}s)"
  local t0=$SECONDS rc=0
  timeout "$cap" bash -c '"$@"' _ "$@" > "$WORK/logs/$name.log" 2>&1 < /dev/null || rc=$?
  local status=ok; [ $rc = 124 ] && status="cut at the cap"; [ $rc != 0 ] && [ $rc != 124 ] && status="failed (rc $rc)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" $((SECONDS - t0)) "$cap" >> "$WORK/parts.tsv"
  echo "   $status in $((SECONDS - t0))s"; tail -3 "$WORK/logs/$name.log"
}
run() { $PY -m benchmark.run "$@"; }
bench() {  # both precisions whatever the first gave (a failed variant exits 1 with the others timed and written)
  local rc=0; for p in fp32 bf16; do make -s bench-gpu VPY="$PY" BENCH_DIR="$WORK/bench_$p" GPU_BENCH_ARGS="$BENCH --precision $p" || rc=$?
  [ -f "$WORK/bench_$p/gpu.json" ] && cp "$WORK/bench_$p/gpu.json" "$OUT/bench_$p.json"; done; return $rc; }
export -f run bench; export PY WORK OUT BENCH

{ command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
} > "$WORK/gpu.txt" 2>&1; cat "$WORK/gpu.txt"

# 3 seeds, one process each (a stream task trains its seeds one by one in a process; three at once use the GPU)
part ptb 240 60 run --multirun +experiment=ptb_small results_dir="$WORK" cohort.axes=[] hydra/launcher=$LAUNCH \
  $([ $LAUNCH = joblib ] && echo hydra.launcher.n_jobs=3) "${DEV[@]}" "${PTB[@]}"
part medium 60 20 run +experiment=ptb_medium results_dir="$WORK" sweep=ptb_medium_probe seed=0 \
  train.steps=$MEDIUM_STEPS train.eval_interval=$MEDIUM_STEPS timing.enabled=false "${DEV[@]}" "${MEDIUM[@]}"
part pmnist 200 60 run --multirun +experiment=pmnist_control results_dir="$WORK" task.data_dir="$MNIST" \
  train.steps=$PMNIST_STEPS "${DEV[@]}" "${PMNIST[@]}"
part bench 160 40 bench  # 23 variants x 3 cells a precision, about a second each
part sweep 150 $([ "$DRY" = 1 ] && echo 40 || echo 120) make -s sweep EXPERIMENT="${SWEEP[0]}" VPY="$PY" RESULTS_DIR="$WORK" REPORTS_DIR="$WORK/reports" \
  LAUNCHER=$LAUNCH JOBS=$SWEEP_JOBS ARGS="$([ "$DRY" = 1 ] && echo "${DEV[*]} cell=lstm reg=none,bn task.seq_len=6" || echo train.steps=$SWEEP_STEPS)"
if wanted jobs; then  # cheapest first, each only while its estimate (x1.5) fits
  $PY -m benchmark.perf.estimate_jobs plan claims_gpu $MEMBERS > "$WORK/jobs_plan.txt" 2> "$WORK/logs/jobs_plan.log"
  n=0
  while read -r est overrides; do
    n=$((n + 1)); [ $n -gt $JOBS_MAX ] && break; [ "$DRY" = 1 ] && est=20
    # shellcheck disable=SC2086
    part "jobs$n" $((est * 3 / 2 + 30)) $((est * 3 / 2 + 10)) run --multirun $overrides results_dir="$WORK" sweep=claims_jobs "${DEV[@]}" "${JOBS[@]}"
  done < "$WORK/jobs_plan.txt"
  ls "$WORK"/claims_jobs/runs > /dev/null 2>&1 && $PY -m benchmark.perf.estimate_jobs rebuild claims_gpu "$WORK/claims_jobs" \
    --json "$WORK/estimate_rebuilt.json" > "$WORK/logs/jobs_rebuild.log" 2>&1
fi
if wanted medium_full; then  # only when the probe's estimate fits the time left
  need=$($PY -c "import sys; from benchmark.analysis.gpu_note import medium_seconds as m; print(int(m(sys.argv[1]) * 1.2 + 30))" "$WORK" 2>/dev/null || echo 100000)
  [ "$DRY" = 1 ] && need=20
  part medium_full $((need + 30)) "$need" run --multirun +experiment=ptb_medium results_dir="$WORK" seed=0 \
    reg.dropout.p=0.5,0.0 cohort.axes=[] hydra/launcher=$LAUNCH $([ $LAUNCH = joblib ] && echo hydra.launcher.n_jobs=2) \
    "${DEV[@]}" $([ "$DRY" = 1 ] && echo "${PTB[*]}")
fi

$PY -m benchmark.analysis.gpu_note "$WORK" "$OUT" > "$WORK/logs/note.log" 2>&1 || echo "note failed: $(tail -3 "$WORK/logs/note.log")"
tar -czf "$OUT/records.tar.gz" -C "$WORK" --exclude='*.pt' --exclude='.running' --exclude='.gpu_locks' . 2> /dev/null
echo "== done in $((SECONDS - START))s: $OUT"; ls -la "$OUT"
