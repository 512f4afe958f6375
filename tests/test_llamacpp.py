"""The llamacpp backend (mtad/runners/llamacpp.py) beyond the engine and decoder tests every
backend runs (helpers.RUNNERS): the GGUF export against the transformers model it came from, the
CPU variant choice, the sequence bookkeeping over many rounds, what it refuses, and the SpD G-test
with its negative control on this backend's own probabilities. Without llama-cpp-python these
fail: CI builds it (scripts/build_llamacpp.sh)."""

import os
from pathlib import Path

import pytest
import torch

import baselines.spd
from mtad.catalogue import build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SamplingConfig, process
from mtad.errors import UserError
from mtad.runners.catalogue import LlamaCpp
from mtad.runners.cpu import machine_cores
from mtad.runners.llamacpp import CPU_VARIANTS, LlamaCppRunner, build_tag, check_gguf, cpu_variant
from mtad.runners.load import PairConfig, load_pair
from mtad.runners.toy_models import tiny_llama

from helpers import SPD_LENGTH, SPD_PROMPT, TOP3, exact_sequences, runner_of, spd_g_test, tiny_pair

XEON = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
        "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
EPYC_AVX2 = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}


def test_the_cpu_variant_is_the_richest_this_cpu_runs_and_never_amx():
    built = {name: Path(f"libggml-cpu-{name}.so") for name in [*CPU_VARIANTS, "sapphirerapids"]}
    assert cpu_variant(XEON, built).name == "libggml-cpu-cooperlake.so"  # AMX reported, never loaded
    assert cpu_variant(XEON | {"avx512vbmi"}, built).name == "libggml-cpu-zen4.so"
    assert cpu_variant(EPYC_AVX2, built).name == "libggml-cpu-haswell.so"
    assert cpu_variant(set(), built).name == "libggml-cpu-x64.so"
    with pytest.raises(UserError, match="no ggml CPU variant of this build runs on this CPU"):
        cpu_variant(EPYC_AVX2, {"zen4": Path("libggml-cpu-zen4.so")})


def test_the_gguf_export_gives_the_transformers_models_logits():
    """The float32 GGUF of the tiny Llama run by llama.cpp (float32 keys and values) against the
    model itself; a negative control: another seed's model is far off."""
    model = tiny_llama(0)
    runner = runner_of(model, "llamacpp")
    sequence = [3, 14, 15, 92, 65, 35, 89, 79]
    logits = runner.feed_uncached(sequence, keep=len(sequence))
    with torch.no_grad():
        reference = model(torch.tensor([sequence])).logits[0]
        other = tiny_llama(1)(torch.tensor([sequence])).logits[0]
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-4)
    assert (other - reference).abs().max() > 0.1


def test_sequence_ids_come_back_over_many_tree_rounds():
    """Each tree node holds a sequence id until the round keeps its path: 200 rounds of a 5-node
    tree on a runner of 8 ids never run out, and the logits after each round stay right."""
    model = tiny_llama(0)
    runner = runner_of(model, "llamacpp", sequences=8)
    context = [7, 3, 9]
    runner.feed_uncached(context)
    parents = [-1, -1, 0, 0, 1]
    mask = torch.eye(5, dtype=torch.bool)
    for i, parent in enumerate(parents):
        if parent >= 0:
            mask[i] |= mask[parent]
    depth = torch.tensor([0, 0, 1, 1, 1])
    for round_ in range(200):
        tokens = [(round_ * 7 + i) % 250 for i in range(5)]
        runner.feed(torch.tensor([tokens]), positions=(len(context) + depth)[None], tree_mask=mask, keep=5)
        runner.keep_positions(list(range(len(context))) + [len(context) + 1, len(context) + 4])  # nodes 1, 4
        context += [tokens[1], tokens[4]]
        if len(context) > 200:
            runner.crop(3)
            context = context[:3]
    assert sorted(runner._free) == list(range(1, 8))
    with torch.no_grad():
        reference = model(torch.tensor([context + [5]])).logits[0, -1]
    torch.testing.assert_close(runner.feed_uncached(context + [5])[-1], reference, rtol=0, atol=1e-4)


def test_a_tree_wider_than_the_sequences_is_one_clear_error():
    runner = runner_of(tiny_llama(0), "llamacpp", sequences=4)
    runner.feed_uncached([1, 2, 3])
    # five siblings: the first sees what the row's next position would, so it extends the row;
    # the other four need a sequence id each, and the row holds one of the four
    with pytest.raises(UserError, match="more than 4 rows and tree nodes at once"):
        runner.feed(torch.tensor([[5, 6, 7, 8, 9]]), positions=torch.tensor([[3, 3, 3, 3, 3]]),
                    tree_mask=torch.eye(5, dtype=torch.bool), keep=5)
    assert runner.length == 3 and sorted(runner._free) == [1, 2, 3]  # nothing half-fed
    torch.testing.assert_close(runner.feed_uncached([1, 2, 3, 4])[-1],
                               runner_of(tiny_llama(0), "llamacpp").feed_uncached([1, 2, 3, 4])[-1], rtol=0, atol=1e-4)


def plain_logits(model, sequence):
    with torch.no_grad():
        return model(torch.tensor([sequence])).logits[0, -1]


def test_a_branch_from_inside_the_row_and_its_path_kept():
    """A node may grow from an earlier row position (it sees positions 0-1, not 2); keeping its
    path drops the row's later position."""
    model = tiny_llama(0)
    runner = runner_of(model, "llamacpp")
    runner.feed_uncached([7, 3, 9])
    logits = runner.feed(torch.tensor([[5]]), positions=torch.tensor([[2]]),
                         tree_mask=torch.tensor([[0, 1]], dtype=torch.bool))[0, -1]
    torch.testing.assert_close(logits, plain_logits(model, [7, 3, 5]), rtol=0, atol=1e-4)
    runner.keep_positions([0, 1, 3])
    assert runner.length == 3
    torch.testing.assert_close(runner.feed_uncached([7, 3, 5, 8])[-1], plain_logits(model, [7, 3, 5, 8]),
                               rtol=0, atol=1e-4)


def test_masks_that_are_not_token_trees_are_refused():
    runner = runner_of(tiny_llama(0), "llamacpp")
    runner.feed_uncached([1, 2, 3])
    # token 1 sees token 0 but at the same depth
    with pytest.raises(ValueError, match="position 3, not its depth 4"):
        runner.feed(torch.tensor([[5, 6]]), positions=torch.tensor([[3, 3]]),
                    tree_mask=torch.tensor([[1, 0], [1, 1]], dtype=torch.bool), keep=2)
    # token 0 sees position 2 but not position 1
    with pytest.raises(ValueError, match="skips a committed position"):
        runner.feed(torch.tensor([[5]]), positions=torch.tensor([[3]]),
                    tree_mask=torch.tensor([[0, 1, 1]], dtype=torch.bool), keep=1)
    # a token that leaves out the last committed position is a branch at position 2, not 3
    with pytest.raises(ValueError, match="position 3, not its depth 2"):
        runner.feed(torch.tensor([[5]]), positions=torch.tensor([[3]]),
                    tree_mask=torch.tensor([[0, 1]], dtype=torch.bool), keep=1)
    assert runner.length == 3
    runner.feed(torch.tensor([[5, 6]]), positions=torch.tensor([[3, 3]]), tree_mask=torch.eye(2, dtype=torch.bool), keep=2)
    with pytest.raises(ValueError, match="a causal feed after tree nodes"):
        runner.feed(torch.tensor([[7]]))
    with pytest.raises(ValueError, match="keeps a row prefix plus a tree path only"):
        runner.keep_positions([0, 1, 2, 3, 4])  # two siblings
    with pytest.raises(ValueError, match="keeps a row prefix plus a tree path only"):
        runner.keep_positions([0, 2])


def test_bad_files_and_settings_are_one_line_each(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_gguf(tmp_path / "none.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"not a model")
    with pytest.raises(UserError, match="is not a GGUF file"):
        LlamaCppRunner(tmp_path / "bad.gguf")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(UserError, match="llama.cpp could not load"):
        LlamaCppRunner(tmp_path / "cut.gguf")
    with pytest.raises(UserError, match=f"pair.threads={machine_cores() + 1} exceeds this machine's"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="llamacpp", threads=machine_cores() + 1)
    with pytest.raises(UserError, match="pair.threads sets llama.cpp's threads"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="eager", threads=1)
    with pytest.raises(UserError, match="runs the GGUF file's own types, not pair.dtype=bfloat16"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="llamacpp", dtype="bfloat16")
    with pytest.raises(UserError, match="decoder 'hf_assisted' needs transformers_model, which pair.backend=llamacpp"):
        LlamaCpp.require(build_decoder("hf_assisted").needs, "decoder 'hf_assisted'")


def test_the_tiny_pair_loads_from_its_config():
    pair = load_pair("tiny", backend="llamacpp", threads=1)
    assert isinstance(pair.target, LlamaCppRunner) and pair.name == "tiny+llamacpp"
    assert pair.target.vocab_size == pair.draft.vocab_size == 259 and pair.tokenizer is not None
    out = generate(pair, build_decoder("spd", gamma=3), [1, 2, 3], max_new_tokens=12,
                   sampling=SamplingConfig(temperature=0), stop_ids=())
    assert len(out.tokens) == 12 and out.stats.draft_accepted > 0


@pytest.fixture(scope="module")
def noisy():
    """A llamacpp pair whose draft is far enough from the target that the residual matters, and
    the target's exact AR probabilities from this backend's own uncached logits."""
    pair = tiny_pair(runner="llamacpp", draft_noise=0.1)

    def next_probs(context):
        pair.target.reset()
        return process(pair.target.feed_uncached(context)[-1], TOP3)

    return pair, exact_sequences(next_probs, SPD_PROMPT, SPD_LENGTH)


def test_spd_on_llamacpp_reproduces_its_target(noisy):
    pvalue, tv = spd_g_test(*noisy)
    assert pvalue > 1e-4, f"p={pvalue:.2e}, TV={tv:.3f}"


def test_spd_on_llamacpp_with_p_instead_of_the_residual_fails(noisy, monkeypatch):
    monkeypatch.setattr(baselines.spd, "residual", lambda p, q: p)
    pvalue, tv = spd_g_test(*noisy)
    assert pvalue < 1e-4, f"negative control passed: p={pvalue:.2e}, TV={tv:.3f}"


def test_threads_default_to_the_machines_cores():
    runner = runner_of(tiny_llama(0), "llamacpp", threads=None)
    assert runner.threads == machine_cores() == len(os.sched_getaffinity(0))


def test_llamacpp_plain_greedy_equals_our_ar():
    """llama.cpp's own greedy generation of the tiny target file emits our AR's tokens, stops where
    the loop says, and books one target call a token."""
    pair = tiny_pair(runner="llamacpp")
    greedy = SamplingConfig(temperature=0)
    for prompt in ([1, 2, 3, 4, 5], [17], [63, 0, 12]):
        ar = generate(pair, build_decoder("ar"), prompt, max_new_tokens=24, sampling=greedy, stop_ids=())
        plain = generate(pair, build_decoder("llamacpp_plain"), prompt, max_new_tokens=24, sampling=greedy,
                         stop_ids=())
        assert plain.tokens == ar.tokens and plain.stats.target_calls == 24
        cut = generate(pair, build_decoder("llamacpp_plain"), prompt, max_new_tokens=24, sampling=greedy,
                       stop_ids=(ar.tokens[5],))
        assert cut.tokens == ar.tokens[: ar.tokens.index(ar.tokens[5]) + 1] and cut.stop_reason == "stop_token"


def test_a_decoder_holding_more_sequences_than_the_backend_is_refused_before_loading():
    assert build_decoder("specinfer", k_config=[4, 2, 2]).sequences() == 1 + 4 + 8 + 16
    assert build_decoder("spectr", k=4, gamma=4).sequences() == 17 and build_decoder("mtad", width=4).sequences() == 4
    LlamaCpp.check_sequences(build_decoder("specinfer").sequences(), "decoder 'specinfer'")
    with pytest.raises(UserError, match=r"decoder 'specinfer' holds 585 rows and tree nodes at once; "
                                        r"pair.backend=llamacpp gives each a llama.cpp sequence and has 128"):
        LlamaCpp.check_sequences(build_decoder("specinfer", k_config=[8, 8, 8]).sequences(), "decoder 'specinfer'")


def test_a_job_on_llamacpp_records_the_build_in_its_fingerprint(tmp_path):
    """Through the harness: the pair's name says the backend, and every record's fingerprint names
    llama-cpp-python's version and the CPU variant loaded (they decide its numerics, not torch)."""
    from hydra import compose, initialize_config_dir

    from mtad.job.config import JobConfig
    from mtad.job.harness import Job, run_jobs
    from mtad.job.records import read_lines
    from mtad.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = JobConfig.from_hydra(compose("config", overrides=[
            "pair=tiny", "pair.backend=llamacpp", "pair.threads=1", "task=synthetic", "task.limit=2",
            "max_new_tokens=8", "decoder=spd", "meter=none", f"results_dir={tmp_path / 'results'}"]))
    summary = run_jobs([Job(cfg, tmp_path / "job")])[0]
    assert summary["pair"] == "tiny+llamacpp" and summary["examples"] == 2
    records = read_lines(tmp_path / "job" / "samples.jsonl")
    assert {r["fingerprint"]["llama_cpp"] for r in records} == {build_tag()} and "ggml-cpu-" in build_tag()
    assert records[0]["fingerprint"]["dtype"] == "gguf"
