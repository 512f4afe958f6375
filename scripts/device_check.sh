#!/usr/bin/env bash
# The GPU session's one device call for issue 35 item 4: end-to-end decoding at the paper's shapes
# (random-weight Llama-3.1-8B target, Llama-3.2-1B draft, bf16, static backend, acceptance 0.8
# and 0.6), then scripts/gpu_check.py if time remains. Outputs under $OUT (the device tool's
# folder; ./outputs/device elsewhere). Run it as the device tool's
#
#     run(command="bash scripts/device_check.sh", timeout_s=580)
#
# It stays inside BUDGET seconds (default 540): every step runs under `timeout` and bench_e2e.py
# starts no prompt past its --time-limit; each JSON is rewritten after every prompt or section,
# so a step cut short keeps what it measured. Steps:
#
# 1. bench_e2e, the paper's comparison: ar, spd, mtad (few shapes to compile), 4 prompts x 128
#    new tokens after 128-token prompts, at both levels.
# 2. bench_e2e, the other decoders, with ar and spd again for the same-sitting references (their
#    compiles come after step 1's data is safe; bild and mtjd hit the most shapes, so last), if
#    150 s are left.
# 3. gpu_check.py --skip-timings (greedy identity on CUDA, bf16 sampling smoke, NVML), if 60 s are left.
#
# A dry run of the plumbing on the CPU (step 3 then ends in "error: no CUDA device"):
#     SHAPES=tiny EXTRA="--backend eager --prompts 1 --max-new-tokens 8" PY=.venv/bin/python bash scripts/device_check.sh
#
# Files back (at most 8): nvidia-smi.txt, e2e-core.json/.log, e2e-rest.json/.log, gpu_check.json/.log.
set -u
OUT=${OUT:-outputs/device}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
PY=${PY:-python3}
BUDGET=${BUDGET:-540}
SHAPES=${SHAPES:-llama3}  # SHAPES=tiny: a dry run of this script's steps on the CPU
EXTRA=${EXTRA:-}          # more bench_e2e.py arguments, e.g. for the dry run
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

# step 1: no prompt starts after 340 s (the compiles of the warm-ups count), killed at 400 s
timeout 400 $PY scripts/bench_e2e.py --shapes $SHAPES --decoders ar,spd,mtad --acceptance 0.8,0.6 \
  --time-limit 340 $EXTRA --out "$OUT/e2e-core.json" 2>&1 | tee "$OUT/e2e-core.log"

# step 2: if 150 s are left, all but the last 60 of them
if [ "$(left)" -ge 150 ]; then
  budget=$(( $(left) - 60 ))
  timeout "$budget" $PY scripts/bench_e2e.py --shapes $SHAPES --decoders ar,spd,typical,specinfer,spectr,mcss,bild,mtjd \
    --acceptance 0.8,0.6 --time-limit $((budget - 40)) $EXTRA --out "$OUT/e2e-rest.json" 2>&1 | tee "$OUT/e2e-rest.log"
fi

# step 3: whatever is left, if 60 s
if [ "$(left)" -ge 60 ]; then
  timeout $(( $(left) - 5 )) $PY scripts/gpu_check.py --skip-timings --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
fi
echo "device_check.sh: done, $(( $(date +%s) - start )) s of $BUDGET"
