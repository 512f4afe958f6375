#!/usr/bin/env bash
# The speed columns of results/table.md: per task one interleaved sweep (mtad/job/interleave.py), in one
# sitting on an otherwise idle machine, into the separate speed store results/speed. Each sweep
# measures afresh (resume=false): its runs replace the same runs of an earlier sitting, so no ratio
# ever mixes two sittings. Each sitting spans its task (task.sample, tasks/base.py: spread): every
# fourth HumanEval problem (41 of 164), 40 Spider dev questions round-robin over its 20 databases
# (the 200 quality questions hold only 4), two MT-Bench questions of each of the 8 categories.
# Two backends, two regimes (BACKEND=...): static (default; the torch loop, compiled, bf16 target
# dequantized from the GGUF files, int8 draft) and llamacpp (the Q4_K_M GGUF files in llama.cpp, as
# CPU users run them; llama.cpp's own generation, llamacpp_plain, takes its turn beside ar).
#   results/speed.sh [task ...]      default: humaneval spider mtbench
#   BACKEND=llamacpp results/speed.sh humaneval
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
case ${BACKEND:=static} in
  static)   PAIR=(pair.backend=static pair.draft_quant=int8); SUFFIX=""; YARDSTICK=hf_assisted ;;
  llamacpp) PAIR=(pair.backend=llamacpp); SUFFIX="-llamacpp"; YARDSTICK=llamacpp_plain ;;
  *) echo "unknown BACKEND $BACKEND (static or llamacpp)" >&2; exit 2 ;;
esac
COMMON=("${PAIR[@]}" "results_dir=${MTAD_SPEED:-results/speed}" resume=false)
for task in "${@:-humaneval spider mtbench}"; do
  for t in $task; do
    case $t in
      humaneval) "$PY" -m mtad.job.interleave --sweep "speed-humaneval$SUFFIX" \
                   --decoders "ar,bild,typical,spd,$YARDSTICK,spectr,specinfer,mcss,mtad" \
                   "${COMMON[@]}" task=humaneval task.sample=41 ;;
      spider)    "$PY" -m mtad.job.interleave --sweep "speed-spider$SUFFIX" \
                   --decoders "ar,spd,specinfer,mtad,mtad:tau=0.3${SUFFIX:+,$YARDSTICK}" \
                   "${COMMON[@]}" task=spider task.limit=null task.sample=40 ;;
      mtbench)   "$PY" -m mtad.job.interleave --sweep "speed-mtbench$SUFFIX" \
                   --decoders "ar,spd,mtad${SUFFIX:+,$YARDSTICK}" \
                   "${COMMON[@]}" task=mtbench task.sample=16 ;;
      *) echo "unknown task $t" >&2; exit 2 ;;
    esac
  done
done
