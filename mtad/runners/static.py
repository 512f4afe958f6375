"""A runner with a preallocated KV cache and a compiled forward (``pair.backend=static``).

Why: the eager runner (``EagerRunner``) grows a DynamicCache by concatenation and runs one Python
module call per operation, so on a GPU a token costs its kernel launches rather than its weight
bytes (Llama-3.1-8B: 18 ms eager against a ~5 ms HBM roofline), and on a CPU a small draft pays
that overhead on every step. Here the keys and values of every layer live in one buffer
[layers, 2, rows, kv_heads, max_length, head_dim] allocated once. A forward writes its n new
tokens at slots length..length+n-1 (in place, one ``index_put_`` a layer) and attends over the
buffer's first slots through an additive mask that hides every slot not in the cache (or not
allowed by a tree mask): on CUDA all ``max_length`` (one shape per graph), on the CPU the cache
rounded up to ``SPAN`` (there the graphs are shape-generic, and attending over 2048 slots cost a
1.5B token 120 of its 320 ms on an AVX2 EPYC). The cache edits are cheap: ``crop`` moves the
length, ``keep_positions`` and ``select_rows`` are one gather over all layers and one copy.

The host only issues work: a forward's inputs (padded tokens and positions, slots, the mask,
built from comparisons by ``additive_mask``) are made on the device, index tensors given to the
cache edits are never read, and on CUDA the output head runs inside the graph
(``head_in_graph``), so a bucketed forward is a few device-to-device copies and one replay.

Shapes: a forward of n tokens on b rows runs at the bucket (n', b') >= (n, b). Padded tokens
write slots that the mask hides and that later forwards overwrite; padded rows are never read.
So a sweep compiles a handful of shapes, once. Forwards longer than the largest bucket (prompts)
run the same code uncompiled. The first call of a bucket compiles it: that call's time goes to
``counter.compile_seconds``, never to ``counter.seconds`` or tokens/s.

Compilation: inductor. On CUDA each bucket's compiled forward is captured in a CUDA graph, so a
forward is one graph launch instead of hundreds of kernel launches (the output head included:
it computes every padded position's logits, the runner copies out the ones it keeps). On the
CPU, inductor's ``freezing`` folds the weights into the generated code as constants (prepacked
for oneDNN): on the 1.5B target a token took 157 ms instead of 199, a 5-token verify 200 instead
of 275. There the head stays outside the graph (see ``head_in_graph``).

Models: the Llama family (``llama``, ``qwen2``): RMSNorm, rotary positions, grouped-query
attention, gated MLP. Only attention and the cache are written here; embeddings, norms,
projections (int8 or not), rotary tables and MLPs are the model's own modules.
"""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn
from torch._dynamo.utils import counters

from mtad.errors import UserError
from mtad.runners.base import KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS, ForwardCounter
from mtad.runners.hf import TransformersRunner, output_logits
from mtad.runners.matmul import WIDE_ROWS, upcasts

MODEL_TYPES = ("llama", "qwen2")
TOKEN_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64)  # exact for short blocks, where rows cost on a CPU
ROW_BUCKETS = (1, 2, 4, 8, 16, 32)
INITIAL_ROWS = 8  # KV rows allocated at first; more (wider beams) reallocate and recompile
SPAN = 256  # on the CPU a forward attends over the cache rounded up to a multiple of SPAN slots


def bucket(value: int, buckets: tuple[int, ...]) -> int | None:
    """The smallest bucket >= ``value``; None above the largest."""
    i = bisect.bisect_left(buckets, value)
    return buckets[i] if i < len(buckets) else None


def check_static_model(model) -> None:
    """One ``UserError`` unless ``model`` is a causal LM the static runner implements."""
    config = model.config
    if config.model_type not in MODEL_TYPES:
        raise UserError(f"pair.backend=static supports {', '.join(MODEL_TYPES)} models, not {config.model_type!r}")
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        raise UserError("pair.backend=static does not implement sliding-window attention layers")


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def additive_mask(tree_mask: torch.Tensor | None, start: int, n: int, n_pad: int, span: int, dtype: torch.dtype,
                  ids: torch.Tensor) -> torch.Tensor:
    """The attention mask [1, 1, n_pad, span] of n new tokens (padded to n_pad) written at slots
    start..start+n-1: 0 where a new token may attend, dtype-min elsewhere. Causal, or ``tree_mask``
    (bool [n, m]) over the last m slots start+n-m..start+n-1 (slots before those are visible).
    Padded queries copy the last real one (their output is dropped; a fully masked row would be
    NaN). Built on ``ids``' device from comparisons, no host data: ``ids`` is ``arange(k)`` there,
    k >= start + n_pad and k >= span. Equals the host-built mask of earlier versions (tests)."""
    if tree_mask is None:  # query i sees slots up to start + i (padded queries: start + n - 1)
        allowed = ids[:span] <= ids[start:start + n_pad].clamp(max=start + n - 1)[:, None]
    else:
        m = tree_mask.shape[1]
        first = start + n - m
        rows = tree_mask.to(ids.device, torch.bool)[ids[:n_pad].clamp(max=n - 1)]  # padded queries: the last row
        allowed = nn.functional.pad(rows, (first, span - first - m)).logical_or_(ids[:span] < first)
    return torch.full(allowed.shape, torch.finfo(dtype).min, dtype=dtype, device=ids.device).masked_fill_(
        allowed, 0)[None, None]


class StaticCacheModel(nn.Module):
    """A Llama-family causal LM over its own preallocated KV cache: one registered buffer ``kv``
    [layers, 2 (keys, values), rows, kv_heads, max_length, head_dim] (registered, so CUDA graphs
    see fixed addresses; one buffer, so a cache edit is one gather over all layers). ``forward``
    returns final hidden states, or with ``logits=True`` the output head's logits of every
    position (``head_rows`` as in mtad/runners/hf.py)."""

    def __init__(self, model, rows: int, max_length: int, head_rows: int | None = None):
        super().__init__()
        self.model = model
        self.max_length = max_length
        self.head_rows = head_rows
        self.vocab_size = model.get_output_embeddings().out_features
        self.allocate(rows)

    def allocate(self, rows: int) -> None:
        """(Re)allocate the cache for ``rows`` batch rows; the old contents are kept."""
        config, inner = self.model.config, self.model.model
        heads = config.num_key_value_heads
        head_dim = inner.layers[0].self_attn.head_dim
        dtype, device = inner.embed_tokens.weight.dtype, inner.embed_tokens.weight.device
        new = torch.zeros(len(inner.layers), 2, rows, heads, self.max_length, head_dim, dtype=dtype, device=device)
        old = getattr(self, "kv", None)
        if old is not None:
            kept = min(rows, old.shape[2])
            new[:, :, :kept] = old[:, :, :kept]
        self.register_buffer("kv", new, persistent=False)
        self.rows = rows

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                mask: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """tokens, positions [b, n]; slots [n]: where the new keys go; mask [1, 1, n, span]
        additive, over the first span slots. Returns the final hidden states [b, n, hidden], or
        with ``logits`` the logits [b, n, V]."""
        b, n = tokens.shape
        span = mask.shape[-1]
        inner = self.model.model
        hidden = inner.embed_tokens(tokens)
        cos, sin = inner.rotary_emb(hidden, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        # The new keys and values go in with one index_put_ per layer on the whole buffer, every
        # index a tensor: inductor then writes them in place. (index_copy_ into a view such as
        # kv[i, 0, :b] compiles to a copy of the viewed part, here the whole buffer, per layer.)
        device = tokens.device
        layers = torch.arange(self.kv.shape[0], device=device)
        where = (torch.arange(2, device=device).view(2, 1, 1, 1), torch.arange(b, device=device).view(b, 1, 1),
                 torch.arange(self.kv.shape[3], device=device).view(-1, 1), slots)  # kinds, rows, kv heads, slots
        for i, layer in enumerate(inner.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            self.kv.index_put_((layers[i], *where), torch.stack((_rotate(k, cos, sin), v)))
            keys, values = self.kv[i, 0, :b, :, :span], self.kv[i, 1, :b, :, :span]
            out = nn.functional.scaled_dot_product_attention(_rotate(q, cos, sin), keys, values, attn_mask=mask,
                                                             scale=attn.scaling, enable_gqa=True)
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(b, n, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        hidden = inner.norm(hidden)
        if not logits:
            return hidden
        return output_logits(self.model.get_output_embeddings(), hidden, self.head_rows, self.vocab_size)


class StaticRunner(TransformersRunner):
    """A transformers model's own modules over a ``StaticCacheModel``. ``compile=False`` runs the
    same code, padding included, eagerly; the tests use it everywhere and compile a few cases with
    coarse ``token_buckets`` (each bucket is one compile)."""

    capabilities = TransformersRunner.capabilities | {TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS}
    devices = ("cpu", "cuda")  # inductor with freezing on the CPU, CUDA graphs on CUDA: nothing else is written
    quantizations = ("none", "int8")

    def __init__(self, model, head_rows: int | None = None, max_length: int = 2048, compile: bool = True,
                 token_buckets: tuple[int, ...] = TOKEN_BUCKETS, cuda_graphs: str = "manual",
                 head_in_graph: bool | None = None):
        check_static_model(model)
        super().__init__(model, head_rows=head_rows)
        self.token_buckets = token_buckets
        # Rows for beams up front: new buffers (more rows) mean new graphs, compiled again.
        self.static = StaticCacheModel(self.model, rows=INITIAL_ROWS, max_length=max_length, head_rows=self.head_rows)
        self.max_length = max_length
        self._ids = torch.arange(max_length, device=self.device)  # slot and query indices, for the masks
        self._scratch = torch.empty(0, dtype=self.static.kv.dtype, device=self.device)  # for the cache edits
        # Bucketed forwards apply the output head inside the forward (so inside the CUDA graph) to
        # every padded position; the runner keeps its [:b, n-keep:n]. Default: on CUDA only. On
        # the CPU, freezing would fold the head's weight into every compiled graph as one more
        # constant copy (for tied embeddings, the 1.5B target's 151,936 x 1536 table: 0.47 GB a
        # graph), the head would miss the eager wide-matmul path (mtad/runners/matmul.py), and
        # with no launches to save it only costs the padded positions' products.
        self.head_in_graph = self.device.type == "cuda" if head_in_graph is None else head_in_graph
        self._length, self._rows = 0, 1
        self._compiled = None
        self._calls: dict[tuple[int, int], int] = {}  # calls per bucket since the last allocation
        # CUDA graphs: "manual" captures one graph per bucket around the compiled code (below);
        # "inductor" leaves it to mode="reduce-overhead" (scripts/gpu_check.py compares the two).
        self.cuda_graphs = cuda_graphs if self.device.type == "cuda" else None
        self._graphs: dict[tuple[int, int], tuple] = {}
        if compile:
            import torch._dynamo.config as dynamo_config
            import torch._inductor.config as inductor_config

            # Every bucket is one specialization of the same code: allow them all.
            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit,
                                                len(token_buckets) * len(ROW_BUCKETS))
            cpu = self.device.type == "cpu"
            if cpu:
                inductor_config.freezing = True  # process-wide; weights become constants (inference only)
            mode = "reduce-overhead" if self.cuda_graphs == "inductor" else None
            # On the CPU each compiled graph holds its own frozen (repacked) copy of the weights: a
            # static graph per bucket would cost a model's bytes per bucket (2.6 GB each for the
            # 1.5B target), so there the graphs are shape-generic (dynamic): a few per model (dynamo
            # still specializes sizes of 1, so 1-token and 1-row steps get their own).
            self._compiled = torch.compile(self.static, mode=mode, dynamic=cpu, fullgraph=True)

    @property
    def capacity(self) -> int:
        return self.max_length

    def reset(self) -> None:
        self._length, self._rows = 0, 1
        self._scratch = self._scratch.new_empty(0)  # its memory freed (see _gather)
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return self._length

    def _forward(self, tokens, positions, mask, keep):
        b, n = tokens.shape
        start = self._length
        if start + n > self.max_length:
            raise UserError(f"the static KV cache holds {self.max_length} positions and this forward needs "
                            f"{start + n}: raise pair.max_length")
        if start and b != self._rows:
            raise ValueError(f"the cache holds {self._rows} rows, the input has {b}")
        n_pad, b_pad = bucket(n, self.token_buckets), bucket(b, ROW_BUCKETS)
        bucketed = n_pad is not None and b_pad is not None and start + n_pad <= self.max_length
        # Where wide bf16 products run in float32 (mtad/runners/matmul.py) the eager forward beats a compiled
        # bf16 one (measured per projection: 64 tokens 16 ms against 86) and needs no compile.
        bucketed = bucketed and not (n * b >= WIDE_ROWS and upcasts(self.dtype, self.device))
        if not bucketed:  # e.g. a prompt: run exactly this shape, uncompiled
            n_pad, b_pad = n, b
        compiled = bucketed and self._compiled is not None
        if b_pad > self.static.rows:
            self._allocate(b_pad)
        # Every input is made on the device (padding: zeros), from device tensors or host ints.
        tokens_in = nn.functional.pad(tokens, (0, n_pad - n, 0, b_pad - b))
        positions_in = nn.functional.pad(positions, (0, n_pad - n, 0, b_pad - b))
        slots = torch.arange(start, start + n_pad, device=self.device)
        span = self.max_length  # key slots attended to: all on CUDA (fixed graph shapes) ...
        if self.device.type != "cuda":  # ... the cache and these tokens, rounded up, on the CPU
            span = min(span, -(-(start + n_pad) // SPAN) * SPAN)
        attention = additive_mask(mask, start, n, n_pad, span, self.static.kv.dtype, self._ids)
        logits = bucketed and self.head_in_graph
        if compiled:
            key = (n_pad, b_pad)
            graphs = counters["stats"]["unique_graphs"]
            calls = self._calls.get(key, 0)
            self._calls[key] = calls + 1
            captures = self.cuda_graphs == "manual" and key not in self._graphs
            out = self._run_compiled(key, (tokens_in, positions_in, slots, attention), logits)
            # A call that compiled a graph, captured one, or (inductor's CUDA graphs, on a shape's
            # second call) recorded one: ``feed`` books it as compile time.
            self.compiling = (counters["stats"]["unique_graphs"] != graphs or captures
                              or (self.cuda_graphs == "inductor" and calls < 2))
        else:
            with self.eager():
                out = self.static(tokens_in, positions_in, slots, attention, logits)
        self._length, self._rows = start + n, b
        if logits:  # a copy: a CUDA graph's output is overwritten by its next replay
            return out[:b, n - keep:n].clone()
        return self._head(out[:b, n - keep:n])

    def _run_compiled(self, key: tuple[int, int], inputs: tuple[torch.Tensor, ...], logits: bool) -> torch.Tensor:
        if self.cuda_graphs == "inductor":
            torch.compiler.cudagraph_mark_step_begin()
        if self.cuda_graphs != "manual":
            return self._compiled(*inputs, logits)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs, logits)
        graph, static_inputs, output = self._graphs[key]
        for static, value in zip(static_inputs, inputs):
            static.copy_(value)
        graph.replay()
        return output

    def _capture(self, inputs: tuple[torch.Tensor, ...], logits: bool) -> tuple:
        """A CUDA graph of the compiled forward on copies of ``inputs`` (later calls copy theirs
        in). Warm-up runs compile it on a side stream; they write this call's own keys and values,
        which the replay writes again."""
        static_inputs = tuple(x.clone() for x in inputs)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._compiled(*static_inputs, logits)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool: freed with the graph (see _allocate)
            output = self._compiled(*static_inputs, logits)
        return graph, static_inputs, output

    def _allocate(self, rows: int) -> None:
        self.static.allocate(rows)
        self._calls.clear()  # new buffers: every bucket compiles (and is captured) again
        self._graphs.clear()

    def crop(self, length: int) -> None:
        self._length = min(self._length, length)

    # The cache edits: one gather over every layer's keys and values, then one copy back. Index
    # tensors may be on the device: nothing here reads them.
    def select_rows(self, rows) -> None:
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        if len(rows) > self.static.rows:
            self._allocate(bucket(len(rows), ROW_BUCKETS) or len(rows))
        used = self.static.kv.narrow(4, 0, self._length)
        used.narrow(2, 0, len(rows)).copy_(self._gather(used, 2, rows))
        self._rows = len(rows)

    def keep_positions(self, positions) -> None:
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        rows = self.static.kv.narrow(2, 0, self._rows)
        rows.narrow(4, 0, len(positions)).copy_(self._gather(rows, 4, positions))
        self._length = len(positions)

    def _gather(self, source: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
        """``source.index_select(dim, index)``, written into a scratch buffer kept for the next
        edits of the generation (grown by doubling, dropped by ``reset``, so a generation's host
        ops do not depend on the one before). The gathered part of all layers' cache is tens to
        hundreds of MB (a 0.5B draft's 3 beams of 600 positions: 22 MB): a fresh one per edit
        would be a fresh mmap on the CPU, its pages faulted in every round (mtad/runners/matmul.py
        measured that cost for smaller buffers)."""
        shape = list(source.shape)
        shape[dim] = len(index)
        size = math.prod(shape)
        if self._scratch.numel() < size:
            self._scratch = torch.empty(max(size, 2 * self._scratch.numel()), dtype=source.dtype,
                                        device=source.device)
        return torch.index_select(source, dim, index, out=self._scratch[:size].view(shape))
