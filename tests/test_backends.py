"""The backend catalogue (mtad/runners/catalogue.py): names, versions and capabilities; a decoder
that needs what a backend's runners lack is refused in one line before any model loads; the toy
backend of tests/recompute_backend.py (no KV cache, no capability) runs ar and spd greedy-identical
to transformers' generate; a backend's version and the shared code's are in the run id."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.base import generate
from mtad.decoding.sampling import SAMPLING_VERSION, SamplingConfig
from mtad.errors import UserError, one_line_errors
from mtad.job import harness
from mtad.job.config import JobConfig
from mtad.job.comparison import current_versions, version_key
from mtad.job.records import run_id
from mtad.paths import CONF_DIR
from mtad.runners.base import CAPABILITIES, GGUF_FILE, KEPT_POSITIONS, ROW_SELECTION, TRANSFORMERS_MODEL, Runner
from mtad.runners.catalogue import BACKENDS, Eager, backend, register_backend
from mtad.runners.load import PairConfig, load_pair
from mtad.runners.toy_models import tiny_llama

from recompute_backend import Recompute, RecomputeRunner

GREEDY = SamplingConfig(temperature=0)
PROMPTS = [[1, 2, 3, 4, 5], [40, 41, 9, 60, 2, 33, 8, 8]]
NEW_TOKENS = 30
# the method each capability's runners override (tree masks are read by ``_forward`` itself)
METHODS = {ROW_SELECTION: "select_rows", KEPT_POSITIONS: "keep_positions", TRANSFORMERS_MODEL: "transformers_model",
           GGUF_FILE: "gguf_file"}


def test_every_backend_has_a_version_and_declares_what_its_runners_do():
    assert {"eager", "static", "llamacpp", "recompute"} <= set(BACKENDS)
    for name, cls in BACKENDS.items():
        assert cls.name == name and isinstance(cls.__dict__["version"], int) and cls.version >= 1
        runner = cls.runner_class
        assert issubclass(runner, Runner) and cls.capabilities() <= set(CAPABILITIES), name
        for capability, method in METHODS.items():
            overridden = getattr(runner, method) is not getattr(Runner, method)
            assert overridden == (capability in runner.capabilities), (name, capability)
    for name in DECODERS:
        assert DECODERS[name].needs <= set(CAPABILITIES), name


def test_unknown_duplicate_and_unrunnable_backends_are_refused():
    with pytest.raises(UserError) as err:
        backend("fast")
    assert str(err.value) == f"pair.backend must be one of {', '.join(BACKENDS)}, got 'fast'"
    with pytest.raises(ValueError, match="two backends are named 'recompute'"):
        register_backend(type("Again", (Recompute,), {"version": 1}))

    class Unversioned(Recompute):
        name = "unversioned"

    with pytest.raises(ValueError, match="must set its own integer version"):
        register_backend(Unversioned)
    assert "unversioned" not in BACKENDS
    with pytest.raises(UserError, match=r"pair.backend=recompute does not run pair.draft_quant=int8 \(it runs: none\)"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="recompute", draft_quant="int8")
    with pytest.raises(UserError, match="pair.backend=static runs on cpu, cuda, not meta"):
        PairConfig("tiny", "tiny-llama/target", "tiny-llama/draft", backend="static", device="meta")


@pytest.fixture(scope="module")
def recompute():
    """The tiny pair loaded by the toy backend from its pair config (the shared transformers loading)."""
    pair = load_pair("tiny", backend="recompute")
    assert isinstance(pair.target, RecomputeRunner) and pair.name == "tiny+recompute"
    return pair


@pytest.mark.parametrize("name, params", [("ar", {}), ("spd", {"gamma": 1}), ("spd", {"gamma": 4})])
def test_the_toy_backend_runs_ar_and_spd_greedy_identical_to_transformers_generate(recompute, name, params):
    target = tiny_llama(0)  # the tiny pair's target, built again: the reference never touches the toy
    eager = load_pair("tiny")
    accepted = 0
    for prompt in PROMPTS:
        reference = target.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                    min_new_tokens=NEW_TOKENS)[0, len(prompt):].tolist()
        out = generate(recompute, build_decoder(name, **params), prompt, max_new_tokens=NEW_TOKENS,
                       sampling=GREEDY, stop_ids=())
        assert out.tokens == reference, f"{name} {params} on the recompute backend diverged on {prompt}"
        assert generate(eager, build_decoder("ar"), prompt, max_new_tokens=NEW_TOKENS, sampling=GREEDY,
                        stop_ids=()).tokens == reference
        accepted += out.stats.draft_accepted
    assert name == "ar" or accepted > 0, "the draft never contributed: the identity would hold trivially"


@pytest.mark.parametrize("name, lacking, able", [
    ("mtad", "row_selection", "eager, static, llamacpp"), ("mtjd", "row_selection", "eager, static, llamacpp"),
    ("specinfer", "tree_masks, kept_positions", "eager, static, llamacpp"),
    ("mcss", "tree_masks, kept_positions", "eager, static, llamacpp"),
    ("spectr", "tree_masks, kept_positions", "eager, static, llamacpp"),
    ("hf_assisted", "transformers_model", "eager, static"), ("llamacpp_plain", "gguf_file", "llamacpp"),
])
def test_the_toy_backend_refuses_a_decoder_that_needs_what_it_lacks(recompute, name, lacking, able):
    decoder = build_decoder(name)
    recompute.reset()
    with pytest.raises(UserError) as err:
        generate(recompute, decoder, [1, 2, 3], max_new_tokens=5)
    assert str(err.value) == (f"decoder {name!r} needs {lacking}, which pair 'tiny+recompute' lacks")
    assert recompute.target.counter.calls == recompute.draft.counter.calls == 0  # refused before any forward
    with pytest.raises(UserError) as err:
        Recompute.require(decoder.needs, f"decoder {name!r}")
    assert str(err.value) == (f"decoder {name!r} needs {lacking}, which pair.backend=recompute lacks "
                              f"(backends that have it: {able})")


def hydra_config(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=["pair=tiny", "task=synthetic", "task.limit=1", "max_new_tokens=4",
                                             f"results_dir={tmp_path / 'results'}", *overrides])


def job_config(tmp_path, *overrides) -> JobConfig:
    return JobConfig.from_hydra(hydra_config(tmp_path, *overrides))


def test_a_job_is_refused_in_one_error_line_before_any_model_loads(tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model loaded")

    monkeypatch.setattr(harness, "load_pair", no_loading)
    cfg = hydra_config(tmp_path, "pair.backend=recompute", "decoder=mtad")
    with pytest.raises(SystemExit) as exit_code, one_line_errors():
        harness.run_job(cfg, tmp_path / "job")
    assert exit_code.value.code == 2
    assert capsys.readouterr().err == ("error: decoder 'mtad' needs row_selection, which pair.backend=recompute lacks "
                                       "(backends that have it: eager, static, llamacpp)\n")
    harness.Job(job_config(tmp_path, "pair.backend=recompute", "decoder=spd"), tmp_path / "spd")  # spd: accepted


def test_the_backend_and_shared_code_versions_are_in_the_run_id(tmp_path, monkeypatch):
    cfg = job_config(tmp_path, "decoder=spd")
    versions = harness.Job(cfg, tmp_path / "a").recorder.versions
    assert {k: versions[k] for k in ("backend", "sampling", "quant", "matmul")} == {
        "backend": 1, "sampling": SAMPLING_VERSION, "quant": 1, "matmul": 1}
    before = harness.Job(cfg, tmp_path / "b").recorder.run_id
    # at version 1 the late versions are left out: the id of a run recorded before they existed
    config = harness.Job(cfg, tmp_path / "c").recorder.config
    old = {k: v for k, v in versions.items() if k not in ("backend", "quant", "matmul")}
    assert run_id(config, old) == before
    monkeypatch.setattr(Eager, "version", 2)
    assert harness.Job(cfg, tmp_path / "d").recorder.run_id != before
    monkeypatch.setattr(Eager, "version", 1)
    monkeypatch.setattr(harness, "SAMPLING_VERSION", SAMPLING_VERSION + 1)
    assert harness.Job(cfg, tmp_path / "e").recorder.run_id != before


def test_a_run_without_a_late_version_counts_as_its_first():
    old = {"versions": {"harness": 1, "task": 1, "decoder": 1}}
    same = {"versions": {"harness": 1, "task": 1, "decoder": 1, "backend": 1, "sampling": 1, "quant": 1, "matmul": 1}}
    newer = {"versions": {**same["versions"], "backend": 2}}
    assert version_key(old) == version_key(same) < version_key(newer)
    assert current_versions([old, same]) == ([old, same], 0)
    assert current_versions([old, same, newer]) == ([newer], 2)
    assert version_key({})[:3] == (0, 0, 0)  # records from before versions existed

