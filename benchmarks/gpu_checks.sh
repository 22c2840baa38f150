#!/usr/bin/env bash
# The GPU checks and benchmarks in one script, for a machine with one CUDA GPU:
#
#     bash benchmarks/gpu_checks.sh OUTDIR
#
# Runs from the repository root with the machine's own torch (no install: PYTHONPATH=.), each
# step under its own time limit so that a slow step cannot starve the others, and writes each
# step's log (and the JSON the benchmarks write) into OUTDIR. Steps, most important first:
#   0. the streamed attribute + evaluate stages against a bare forward+backward of the same rows
#      (ResNet-50, 224 px, 32 draws, 2 models; float32 and bf16): draws/s and the ratio;
#   1. the quickstart on the GPU with the training accelerations on (bf16 autocast,
#      channels_last, torch.compile) and bf16/channels_last attribution: every GPU code path of
#      the pipeline, end to end, and its wall time;
#   1b. the tiny test config run twice: do training and metrics repeat bitwise on the GPU?
#   2. the attribute stage's scaling at the paper's scale (ResNet-50, 224 px);
#   3. packing several noise levels into shared calls (ResNet-18, 224 px, 4 and 16 images);
#   4. the engine's rows per call (small CNN);
#   5. `smoothstab plan` of the paper presets, timed on this GPU;
#   6. smoothing against a bare forward+backward and Captum (captum must be importable);
#   7. the GPU-only tests.
# Results and the commands are recorded in benchmarks/RESULTS.md.
set -u
out=${1:?usage: gpu_checks.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - t0)) s"
    tail -n 40 "$out/$name.log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))"
    nproc
} >"$out/machine.log" 2>&1
cat "$out/machine.log"

step stream_resnet50 300 $py benchmarks/bench_stream_gpu.py --json "$out/stream_resnet50.json"
step quickstart_gpu 150 $py -m smoothstab run --out /tmp/gpu_qs \
    --set train.device=cuda --set attribution.device=cuda \
    --set train.amp=bf16 --set train.channels_last=true --set train.compile=true \
    --set attribution.amp=bf16 --set attribution.channels_last=true --set attribution.pack=true
step repeat_cuda 120 $py benchmarks/repeat_run.py --device cuda
step scaling_resnet50 200 $py benchmarks/bench_scaling.py --device cuda --model resnet50 \
    --size 224 --json "$out/scaling_resnet50.json"
step packing_resnet18_4 40 $py benchmarks/bench_packing.py --device cuda --model resnet18 \
    --size 224 --images 4 --samples 32 --batch-size 1024
step packing_resnet18_16 40 $py benchmarks/bench_packing.py --device cuda --model resnet18 \
    --size 224 --images 16 --samples 32 --batch-size 1024
step rows_cuda 40 $py benchmarks/bench_rows.py --device cuda --no-memory
step plan_imagenet 60 $py -m smoothstab plan paper/imagenet_resnet50
step plan_cifar 40 $py -m smoothstab plan paper/cifar10_resnet34
step smooth_cuda 90 $py benchmarks/bench_smooth.py --device cuda --json "$out/smooth.json"
step gpu_tests 60 $py -m pytest -q -p no:cacheprovider tests/core/test_randomize.py tests/experiments/models/test_accel.py
