"""scripts/bench_speed.py's reading of llama.cpp's own speculative decoding: the yardstick is
credited with the tokens our spd job needed, not with the extra tokens of its last round."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT, load_script

bench_speed = load_script("bench_speed")

# the summary lines of a real run (llama.cpp 0.3.36's llama-speculative, -n 9, gamma 4, greedy):
# asked to pass 9 tokens, its last round of five took it to 11
LOG = """0.05.047.456 I encoded   13 tokens in    0.340 seconds, speed:   38.283 t/s
0.05.047.531 I decoded   11 tokens in    0.458 seconds, speed:   24.037 t/s
0.05.047.624 I n_predict = 11
0.05.047.667 I n_drafted = 8
0.05.047.709 I n_accept  = 8
"""


def test_the_extra_tokens_of_its_last_round_are_not_credited():
    counts = bench_speed.speculative_counts(LOG, 10)
    assert counts["tokens"] == 10 and counts["generated"] == 11
    assert counts["seconds"] == pytest.approx(0.340 + 0.458)  # its prompt pass counts, as in ours
    assert (counts["drafted"], counts["accepted"]) == (8, 8)


def test_a_run_short_of_the_tokens_or_without_its_summary_is_refused():
    with pytest.raises(ValueError, match="generated 11 tokens of the 12"):
        bench_speed.speculative_counts(LOG, 12)
    with pytest.raises(ValueError, match="lacks decoded"):
        bench_speed.speculative_counts("\n".join(line for line in LOG.splitlines() if "decoded" not in line), 10)


def test_llamacpp_tools_without_an_spd_decoder_is_refused_before_any_work(tmp_path):
    # its token counts come from our spd job: without one, one line, before the pair loads
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_speed.py"), "--decoders", "ar",
                           "--llamacpp-tools", str(tmp_path), "--out", str(tmp_path / "out.json"), "pair=tiny"],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: --llamacpp-tools: llama-speculative takes its token counts from an spd decoder; add spd to --decoders"]
    assert proc.stdout == "" and not (tmp_path / "out.json").exists()  # no roofline, no sitting
