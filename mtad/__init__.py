"""mtad: a benchmark harness for draft-and-verify LLM decoding.

    import mtad
    pair = mtad.load_pair("tiny")
    decoder = mtad.build_decoder("mtad", gamma=4, width=4, tau=0.5)
    out = mtad.generate(pair, decoder, [1, 2, 3], max_new_tokens=32, seed=0)
    out.tokens, out.stats.block_efficiency
"""

from mtad.decoding import Decoder, Generation, GenerationStats, generate
from mtad.pair import Pair
from mtad.models import load_pair
from mtad.sampling import SamplingConfig

__version__ = "0.1.0"

__all__ = ["Decoder", "Pair", "Generation", "GenerationStats", "SamplingConfig", "build_decoder", "generate",
           "load_pair"]


def __getattr__(name: str):
    # The catalogue imports every decoder, and the decoders import parts of this package: loaded
    # on first use, so importing any one decoder module first works too.
    if name == "build_decoder":
        from mtad.catalogue import build_decoder

        return build_decoder
    raise AttributeError(f"module 'mtad' has no attribute {name!r}")
