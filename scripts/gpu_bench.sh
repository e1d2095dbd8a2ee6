#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md ("Speed", GPU rows) in one run: each part in its own process with its own
# time limit, so that one slow part loses only its own rows. Logs (one JSON line per row, then a markdown table)
# go to OUTDIR/<part>.log.
#
#   bash scripts/gpu_bench.sh outputs/gpu_bench
set -u
out=${1:-outputs/gpu_bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1

part() {  # name, seconds, then bench_speed arguments
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" python3 scripts/bench_speed.py "$@" >"$out/$name.log" 2>&1
    echo "   rc $? after ${SECONDS}s in all"
}

# Every method on the GPU with a few steps: a tensor on the wrong device fails here.
echo "== smoke"; timeout 45 python3 scripts/gpu_smoke.py >"$out/smoke.log" 2>&1; echo "   rc $? after ${SECONDS}s in all"
# Host-device synchronizations per method (each one stalls the GPU until the host queues more work).
part syncs 50 --parts syncs
# Real-size architectures: per-evaluation floors and overheads of DPS and VIPaint-2 (10 steps), DPS under bf16.
part real-size 100 --parts real-size --real-steps 10
# Stable Diffusion VIPaint-2 under a 16 GB allocator cap, with and without the memory options.
part sd-memory 100 --parts sd-memory --memory-limit-gb 16
# The paper-settings cost ratio, batch and MC scaling; every method on the embedded priors.
part cost-batch 75 --parts cost batch
part methods 90 --parts methods --repeats 3
# bf16 autocast and torch.compile on the embedded latent prior; "reduce-overhead" replays CUDA graphs, the fix for
# the launch-bound embedded priors (compile_mode; not yet measured on a GPU).
part options 60 --parts options --repeats 3 --compile-mode reduce-overhead

# The command-line quickstart on the GPU, float32 and bf16-mixed (the Trainer's precision).
for precision in 32-true bf16-mixed; do
    start=$SECONDS
    timeout 40 python3 -m vipaint_pl.cli inpaint --config configs/quickstart.yaml --trainer.precision "$precision" \
        --data.output_dir "/tmp/quickstart_$precision" --trainer.default_root_dir /tmp/quickstart_logs \
        >>"$out/quickstart.log" 2>&1
    echo "== quickstart $precision: rc $? in $((SECONDS - start))s"
done
tail -n 2 "$out"/*.log | cut -c1-300
