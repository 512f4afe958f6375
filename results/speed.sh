#!/usr/bin/env bash
# The speed columns of results/table.md: per task one interleaved sweep (mtad/job/interleave.py), in one
# sitting on an otherwise idle machine, into the separate speed store results/speed. Each sweep
# measures afresh (resume=false): its runs replace the same runs of an earlier sitting, so no ratio
# ever mixes two sittings.
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
                   "${COMMON[@]}" task=humaneval task.limit=40 ;;
      spider)    "$PY" -m mtad.job.interleave --sweep speed-spider --decoders ar,spd,specinfer,mtad,mtad:tau=0.3 \
                   "${COMMON[@]}" task=spider task.limit=40 ;;
      mtbench)   "$PY" -m mtad.job.interleave --sweep speed-mtbench --decoders ar,spd,mtad \
                   "${COMMON[@]}" task=mtbench task.limit=10 ;;
      *) echo "unknown task $t" >&2; exit 2 ;;
    esac
  done
done
