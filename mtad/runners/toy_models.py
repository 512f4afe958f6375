"""Models built in-process from a seed (no files, no network), for tests and benchmarks.

- ``tiny_llama_pair``: a tiny random Llama target and a weight-perturbed copy as its draft,
  run through the real backends' runners (cache, masks and positions as for a real model), with
  ``tiny_tokenizer``, a byte-level tokenizer of the same vocabulary, so text tasks run on it.
- ``random_llama``: a random-weight Llama of a given shape (``LLAMA3_SHAPES``: Llama-3.1-8B and
  Llama-3.2-1B), built directly on its device, for timings where only the shapes matter
  (scripts/gpu_check.py, scripts/bench_e2e.py).
- ``TableLM``: an order-2 Markov "table LM" whose cache stores the tokens it consumed, so exact
  sequence probabilities are known in closed form and any cache bookkeeping error changes its
  logits (docs/decoders.md#tablelm-order-2-table-model).
"""

from __future__ import annotations

import torch

from mtad.runners.base import KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS, ForwardCounter, Runner

TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB = 256 + len(TINY_SPECIAL_TOKENS)
TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    """Byte-level tokenizer: the 256 byte symbols (no merges) plus chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=TINY_SPECIAL_TOKENS[0],
                                        additional_special_tokens=TINY_SPECIAL_TOKENS[1:])
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_llama(seed: int = 0, vocab_size: int = TINY_VOCAB, attn_implementation: str = "sdpa"):
    """A 2-layer random Llama in float32. Weights are drawn with a larger spread than usual so
    next-token distributions are peaked and greedy argmaxes are not near-ties."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.25, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                         tie_word_embeddings=False, attn_implementation=attn_implementation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def tiny_llama_pair(seed: int = 0, draft_noise: float = 0.03, attn_implementation: str = "sdpa"):
    """(target, draft): the draft is the target with Gaussian noise of ``draft_noise`` times each
    weight tensor's standard deviation added, so the two agree often but not always."""
    target = tiny_llama(seed, attn_implementation=attn_implementation)
    draft = tiny_llama(seed, attn_implementation=attn_implementation)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in draft.parameters():
            if p.numel() > 1 and p.std() > 0:
                p.add_(torch.randn(p.shape, generator=gen) * draft_noise * p.std())
    return target, draft


# The real configs' shapes (hidden, layers, heads, kv heads, intermediate, vocab, rope), without
# their weights: no hub is reachable from the GPU machines, and shapes alone set the timings.
_LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=500000.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)
LLAMA3_SHAPES = {
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
                         max_position_embeddings=131072, tie_word_embeddings=False, bos_token_id=128000,
                         eos_token_id=128001, rope_parameters={**_LLAMA3_ROPE, "factor": 8.0}),
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                         max_position_embeddings=131072, tie_word_embeddings=True, bos_token_id=128000,
                         eos_token_id=128001, rope_parameters={**_LLAMA3_ROPE, "factor": 32.0}),
}


def random_llama(shape: dict, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16,
                 seed: int | None = None, attn_implementation: str = "sdpa"):
    """A ``LlamaForCausalLM`` of ``shape`` (``LlamaConfig`` fields) with random weights in ``dtype``,
    allocated and initialised on ``device`` itself (an 8B built on the host and moved would take
    minutes)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(attn_implementation=attn_implementation, **shape)
    device = torch.device(device)
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device):
            torch.set_default_dtype(dtype)
            try:
                return LlamaForCausalLM(config).eval()
            finally:
                torch.set_default_dtype(previous)


class TableLM(Runner):
    """Order-2 Markov LM: logits = table[token two back, previous token] (index V = "no token").

    The cache is the list of tokens consumed per batch row, in feed order. A new token sees the
    whole cache plus the new tokens its mask allows, and the position id it is given must equal
    the number of tokens it sees minus one, so wrong masks, positions, crops or row selections
    all change the output or fail loudly.
    """

    capabilities = frozenset({TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS})

    def __init__(self, table: torch.Tensor):
        super().__init__()
        vocab = table.shape[-1]
        if table.shape != (vocab + 1, vocab + 1, vocab):
            raise ValueError(f"table must be [V+1, V+1, V], got {tuple(table.shape)}")
        self.table = table.float()
        self.vocab_size = vocab
        self.device = torch.device("cpu")
        self.rows: list[list[int]] = [[]]

    @classmethod
    def random_pair(cls, vocab: int, seed: int, draft_noise: float = 0.8, scale: float = 1.5):
        """(target, draft) tables: the draft's logits are the target's plus N(0, draft_noise^2)."""
        gen = torch.Generator().manual_seed(seed)
        target = torch.randn(vocab + 1, vocab + 1, vocab, generator=gen) * scale
        draft = target + torch.randn(target.shape, generator=gen) * draft_noise
        return cls(target), cls(draft)

    def logits_after(self, context: list[int]) -> torch.Tensor:
        """Next-token logits after a plain token sequence (no cache involved)."""
        none = self.vocab_size
        prev2 = context[-2] if len(context) >= 2 else none
        prev1 = context[-1] if context else none
        return self.table[prev2, prev1]

    def reset(self) -> None:
        self.rows = [[]]
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return len(self.rows[0])

    def _forward(self, tokens, positions, mask, keep):
        batch, n = tokens.shape
        if len(self.rows) != batch:
            raise ValueError(f"cache has {len(self.rows)} rows, input has {batch}")
        out = torch.empty(batch, n, self.vocab_size)
        for r in range(batch):
            cached = self.rows[r]
            keys = cached + tokens[r].tolist()
            for i in range(n):
                if mask is None:
                    visible = keys[: len(cached) + i + 1]
                else:
                    first = len(keys) - mask.shape[1]
                    visible = keys[:first] + [keys[first + j] for j in range(mask.shape[1]) if mask[i, j]]
                if int(positions[r, i]) != len(visible) - 1:
                    raise ValueError(f"position id {int(positions[r, i])} but the token sees {len(visible)} tokens")
                out[r, i] = self.logits_after(visible)
            self.rows[r] = keys
        return out[:, n - keep:]

    def crop(self, length: int) -> None:
        self.rows = [row[:length] for row in self.rows]

    def select_rows(self, rows) -> None:
        self.rows = [list(self.rows[int(r)]) for r in torch.as_tensor(rows).tolist()]

    def keep_positions(self, positions) -> None:
        positions = torch.as_tensor(positions).tolist()
        self.rows = [[row[p] for p in positions] for row in self.rows]
