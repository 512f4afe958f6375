#!/usr/bin/env bash
# The speed columns of results/table.md: per task one interleaved sweep (mtad/job/interleave.py), in one
# sitting on an otherwise idle machine, into the separate speed store results/speed. Each sweep
# measures afresh (resume=false): its runs replace the same runs of an earlier sitting, so no ratio
# ever mixes two sittings. Each sitting spans its task (task.sample, tasks/base.py: spread): every
# fourth HumanEval problem (41 of 164), 40 Spider dev questions round-robin over its 20 databases
# (the 200 quality questions hold only 4), two MT-Bench questions of each of the 8 categories.
#   results/speed.sh [task ...]      default: humaneval spider mtbench
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
COMMON=(pair.backend=static pair.draft_quant=int8 "results_dir=${MTAD_SPEED:-results/speed}" resume=false)
for task in "${@:-humaneval spider mtbench}"; do
  for t in $task; do
    case $t in
      humaneval) "$PY" -m mtad.job.interleave --sweep speed-humaneval \
                   --decoders ar,bild,typical,spd,hf_assisted,spectr,specinfer,mcss,mtad \
                   "${COMMON[@]}" task=humaneval task.sample=41 ;;
      spider)    "$PY" -m mtad.job.interleave --sweep speed-spider --decoders ar,spd,specinfer,mtad,mtad:tau=0.3 \
                   "${COMMON[@]}" task=spider task.limit=null task.sample=40 ;;
      mtbench)   "$PY" -m mtad.job.interleave --sweep speed-mtbench --decoders ar,spd,mtad \
                   "${COMMON[@]}" task=mtbench task.sample=16 ;;
      *) echo "unknown task $t" >&2; exit 2 ;;
    esac
  done
done
