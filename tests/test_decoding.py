"""The generation loop: stopping, truncation, counters and bad input."""

import pytest

from mtad.catalogue import build_decoder
from mtad.decoding.base import Block, Context, Decoder, generate
from mtad.decoding.sampling import SamplingConfig

from helpers import RUNNERS, skip_unless, table_pair, tiny_pair


class Scripted(Decoder):
    """Emits fixed blocks (accepted draft tokens first) and feeds the target once per step."""

    name = "scripted"

    def __init__(self, blocks):
        self.blocks = list(blocks)

    def step(self, ctx: Context) -> Block:
        ctx.pair.target.feed_uncached(ctx.tokens)
        tokens, accepted, drafted = self.blocks.pop(0)
        return Block(tokens, accepted=accepted, drafted=drafted)


def test_stop_token_anywhere_in_a_block_truncates_and_counts_only_emitted():
    pair = table_pair(vocab=6)
    decoder = Scripted([([1, 2, 3, 4, 0], 4, 4), ([1, 5, 2, 3, 4], 4, 4)])
    out = generate(pair, decoder, [0], max_new_tokens=100, stop_ids=(5,))
    assert out.tokens == [1, 2, 3, 4, 0, 1, 5] and out.stop_reason == "stop_token"
    s = out.stats
    assert s.new_tokens == 7 and s.target_calls == 2 and s.draft_proposed == 8
    assert s.draft_accepted == 4 + 2          # the second block's accepted tokens after the stop are not emitted
    assert s.proposed_per_position == [2, 2, 2, 2] and s.accepted_per_position == [2, 2, 1, 1]
    assert s.block_efficiency == pytest.approx(3.5)


def test_max_new_tokens_truncates_a_block():
    pair = table_pair(vocab=6)
    out = generate(pair, Scripted([([1, 2, 3], 2, 2), ([1, 2, 3], 2, 2)]), [0], max_new_tokens=4, stop_ids=())
    assert out.tokens == [1, 2, 3, 1] and out.stop_reason == "max_new_tokens"
    assert out.stats.new_tokens == 4 and out.stats.draft_accepted == 3


def test_settled_cuts_at_the_first_token_that_settles_and_counts_only_emitted():
    pair = table_pair(vocab=6)
    settles_on_two_threes = lambda tokens: tokens.count(3) >= 2  # noqa: E731 (a monotone test)
    decoder = Scripted([([1, 3, 2, 4, 0], 4, 4), ([3, 1, 2, 3, 4], 4, 4), ([1], 0, 0)])
    out = generate(pair, decoder, [0], max_new_tokens=100, stop_ids=(), settled=settles_on_two_threes)
    assert out.tokens == [1, 3, 2, 4, 0, 3] and out.stop_reason == "settled"
    assert out.stats.new_tokens == 6 and out.stats.target_calls == 2 and out.stats.draft_accepted == 4 + 1


def test_settled_before_a_stop_token_in_the_same_block_wins_and_a_stop_token_alone_stays_one():
    pair = table_pair(vocab=6)
    out = generate(pair, Scripted([([1, 3, 2, 5], 3, 3)]), [0], max_new_tokens=100, stop_ids=(5,),
                   settled=lambda tokens: 3 in tokens)
    assert out.tokens == [1, 3] and out.stop_reason == "settled"
    out = generate(pair, Scripted([([1, 2, 5, 3], 3, 3)]), [0], max_new_tokens=100, stop_ids=(5,),
                   settled=lambda tokens: 3 in tokens)
    assert out.tokens == [1, 2, 5] and out.stop_reason == "stop_token"


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name, params", [("ar", {}), ("spd", {"gamma": 3}), ("mtad", {"gamma": 3, "width": 2})])
def test_counters_add_up(name, params, runner):
    skip_unless(runner, decoder=name)
    pair = tiny_pair(runner=runner)
    out = generate(pair, build_decoder(name, **params), [3, 1, 4], max_new_tokens=37, seed=1, stop_ids=())
    s = out.stats
    assert len(out.tokens) == s.new_tokens == 37
    assert s.target_calls == pair.target.counter.calls
    gamma = params.get("gamma", 0)
    assert s.draft_proposed == gamma * s.target_calls
    # every step emits its accepted tokens plus one; only the last block may be cut short
    assert s.new_tokens <= s.draft_accepted + s.target_calls
    assert s.new_tokens > s.draft_accepted + s.target_calls - 1 - gamma
    assert sum(s.accepted_per_position) == s.draft_accepted
    assert s.block_efficiency == pytest.approx(s.new_tokens / s.target_calls)
    assert s.wall_seconds >= s.target_seconds + s.draft_seconds > 0
    if name == "ar":
        assert s.draft_calls == 0 and s.target_calls == 37
    else:
        assert s.draft_calls > 0 and s.acceptance_rate > 0


def test_same_seed_same_output_different_seed_different_output():
    pair = tiny_pair()
    decoder = build_decoder("mtad")
    runs = [generate(pair, decoder, [5, 6], max_new_tokens=30, seed=s).tokens for s in (7, 7, 8)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("name, params, message", [
    ("nope", {}, "unknown decoder 'nope' \\(known: ar, bild, hf_assisted, llamacpp_plain, mcss, mtad, mtjd, spd, specinfer, spectr, typical\\)"),
    ("spd", {"gamma": 0}, "^decoder.gamma must be an integer >= 1, got 0$"),
    ("mtad", {"gamma": 0}, "decoder.gamma must be an integer >= 1"),
    ("mtad", {"width": 0}, "decoder.width must be an integer >= 1 \\(beam width W\\)"),
    ("mtad", {"tau": 0}, "decoder.tau must be a number in \\(0, inf\\]"),
    ("mtad", {"tau": -1.0}, "decoder.tau must be a number in \\(0, inf\\]"),
    ("mtad", {"accept_rule": "shortest"}, "accept_rule must be one of"),
    ("mtad", {"beam_norm": "softmax"}, "beam_norm must be one of"),
    ("spd", {"tau": 0.5}, "decoder 'spd' has no parameter 'tau' \\(it takes: gamma\\)"),
])
def test_bad_decoder_parameters_raise_one_line(name, params, message):
    with pytest.raises(ValueError, match=message) as err:
        build_decoder(name, **params)
    assert "\n" not in str(err.value)


def test_bad_generation_input_raises():
    pair = table_pair(vocab=3)
    with pytest.raises(ValueError, match="at least one token"):
        generate(pair, build_decoder("ar"), [], max_new_tokens=3)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 3\)"):
        generate(pair, build_decoder("ar"), [7], max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(pair, build_decoder("ar"), [1], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        generate(pair, build_decoder("ar"), [1], max_new_tokens=3, sampling=SamplingConfig(top_p=0))


def test_stats_add_sums_counts_and_pads_per_position_lists():
    from mtad.decoding.base import GenerationStats

    total = GenerationStats(new_tokens=3, proposed_per_position=[2], accepted_per_position=[1])
    total.add(GenerationStats(new_tokens=4, proposed_per_position=[3, 3, 3], accepted_per_position=[2, 1, 0]))
    assert total.new_tokens == 7
    assert total.proposed_per_position == [5, 3, 3] and total.accepted_per_position == [3, 1, 0]
    assert total.forward_share is None  # no wall time yet
    total.add(GenerationStats(wall_seconds=4.0, target_seconds=2.5, draft_seconds=0.5))
    assert total.forward_seconds == 3.0 and total.forward_share == 0.75


def test_numbers_given_as_text_become_numbers_and_bad_ones_are_one_clear_error():
    from mtad.errors import UserError

    assert build_decoder("mtad", tau=".inf").tau == float("inf") and build_decoder("spd", gamma="3").gamma == 3
    with pytest.raises(UserError, match=r"decoder.tau must be a number in \(0, inf\] \(inf: exactly AR\), got 'abc'"):
        build_decoder("mtad", tau="abc")
