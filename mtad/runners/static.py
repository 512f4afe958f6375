"""A runner with a preallocated KV cache and a compiled forward (``pair.backend=static``).

Why: the eager runner (``EagerRunner``) grows a DynamicCache by concatenation and runs one Python
module call per operation, so on a GPU a token costs its kernel launches rather than its weight
bytes (Llama-3.1-8B: 18 ms eager against a ~5 ms HBM roofline), and on a CPU a small draft pays
that overhead on every step. Here each layer's keys and values live in buffers
[rows, kv_heads, max_length, head_dim] allocated once. A forward writes its n new tokens at
slots length..length+n-1 and attends over the buffer's first slots through an additive mask that
hides every slot not in the cache (or not allowed by a tree mask): on CUDA all ``max_length`` (one
shape per graph), on the CPU the cache rounded up to ``SPAN`` (there the graphs are shape-generic,
and attending over 2048 slots cost a 1.5B token 120 of its 320 ms on an AVX2 EPYC). The cache
edits are cheap: ``crop`` moves the length, ``keep_positions`` and ``select_rows`` gather inside
the buffers.

Shapes: a forward of n tokens on b rows runs at the bucket (n', b') >= (n, b). Padded tokens
write slots that the mask hides and that later forwards overwrite; padded rows are never read.
So a sweep compiles a handful of shapes, once. Forwards longer than the largest bucket (prompts)
run the same code uncompiled. The first call of a bucket compiles it: that call's time goes to
``counter.compile_seconds``, never to ``counter.seconds`` or tokens/s.

Compilation: inductor. On CUDA each bucket's compiled forward is captured in a CUDA graph, so a
forward is one graph launch instead of hundreds of kernel launches. On the CPU, inductor's
``freezing`` folds the weights into the generated code as constants (prepacked for oneDNN): on
the 1.5B target a token took 157 ms instead of 199, a 5-token verify 200 instead of 275.

Models: the Llama family (``llama``, ``qwen2``): RMSNorm, rotary positions, grouped-query
attention, gated MLP. Only attention and the cache are written here; embeddings, norms,
projections (int8 or not), rotary tables and MLPs are the model's own modules.
"""

from __future__ import annotations

import bisect

import torch
from torch import nn
from torch._dynamo.utils import counters

from mtad.errors import UserError
from mtad.runners.base import KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS, ForwardCounter
from mtad.runners.hf import TransformersRunner
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


class StaticCacheModel(nn.Module):
    """A Llama-family causal LM over its own preallocated KV buffers (registered buffers, so CUDA
    graphs see fixed addresses). ``forward`` returns final hidden states, not logits: the runner
    applies the head to the positions it keeps."""

    def __init__(self, model, rows: int, max_length: int):
        super().__init__()
        self.model = model
        self.max_length = max_length
        self.allocate(rows)

    def allocate(self, rows: int) -> None:
        """(Re)allocate the buffers for ``rows`` batch rows; the old contents are kept."""
        config, inner = self.model.config, self.model.model
        heads = config.num_key_value_heads
        head_dim = inner.layers[0].self_attn.head_dim
        dtype, device = inner.embed_tokens.weight.dtype, inner.embed_tokens.weight.device
        for i in range(len(inner.layers)):
            for kind in ("keys", "values"):
                new = torch.zeros(rows, heads, self.max_length, head_dim, dtype=dtype, device=device)
                old = getattr(self, f"{kind}{i}", None)
                if old is not None:
                    new[: old.shape[0]] = old[:rows]
                self.register_buffer(f"{kind}{i}", new, persistent=False)
        self.rows = rows

    def buffers_kv(self):
        for i in range(len(self.model.model.layers)):
            yield getattr(self, f"keys{i}"), getattr(self, f"values{i}")

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """tokens, positions [b, n]; slots [n]: where the new keys go; mask [1, 1, n, span]
        additive, over the first span slots. Returns the final hidden states [b, n, hidden]."""
        b, n = tokens.shape
        span = mask.shape[-1]
        inner = self.model.model
        hidden = inner.embed_tokens(tokens)
        cos, sin = inner.rotary_emb(hidden, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        for i, layer in enumerate(inner.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, n, -1, attn.head_dim).transpose(1, 2)
            keys, values = getattr(self, f"keys{i}")[:b], getattr(self, f"values{i}")[:b]
            keys.index_copy_(2, slots, _rotate(k, cos, sin))
            values.index_copy_(2, slots, v)
            keys, values = keys[:, :, :span], values[:, :, :span]
            out = nn.functional.scaled_dot_product_attention(_rotate(q, cos, sin), keys, values, attn_mask=mask,
                                                             scale=attn.scaling, enable_gqa=True)
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(b, n, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return inner.norm(hidden)


class StaticRunner(TransformersRunner):
    """A transformers model's own modules over a ``StaticCacheModel``. ``compile=False`` runs the
    same code, padding included, eagerly; the tests use it everywhere and compile a few cases with
    coarse ``token_buckets`` (each bucket is one compile)."""

    capabilities = TransformersRunner.capabilities | {TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS}
    devices = ("cpu", "cuda")  # inductor with freezing on the CPU, CUDA graphs on CUDA: nothing else is written
    quantizations = ("none", "int8")

    def __init__(self, model, head_rows: int | None = None, max_length: int = 2048, compile: bool = True,
                 token_buckets: tuple[int, ...] = TOKEN_BUCKETS, cuda_graphs: str = "manual"):
        check_static_model(model)
        super().__init__(model, head_rows=head_rows)
        self.token_buckets = token_buckets
        # Rows for beams up front: new buffers (more rows) mean new graphs, compiled again.
        self.static = StaticCacheModel(self.model, rows=INITIAL_ROWS, max_length=max_length)
        self.max_length = max_length
        self._length, self._rows = 0, 1
        self._compiled = None
        self._calls: dict[tuple[int, int], int] = {}  # calls per bucket since the last allocation
        # CUDA graphs: "manual" captures one graph per bucket around the compiled code (below);
        # "inductor" leaves it to mode="reduce-overhead" (scripts/gpu_check.py compares the two).
        self.cuda_graphs = cuda_graphs if self.device.type == "cuda" else None
        self._graphs: dict[tuple[int, int], tuple] = {}
        if compile:
            import torch._dynamo
            import torch._inductor.config

            # Every bucket is one specialization of the same code: allow them all.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                                       len(token_buckets) * len(ROW_BUCKETS))
            cpu = self.device.type == "cpu"
            if cpu:
                torch._inductor.config.freezing = True  # process-wide; weights become constants (inference only)
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
        tokens_in = torch.zeros(b_pad, n_pad, dtype=torch.long, device=self.device)
        tokens_in[:b, :n] = tokens
        positions_in = torch.zeros(b_pad, n_pad, dtype=torch.long, device=self.device)
        positions_in[:b, :n] = positions
        slots = torch.arange(start, start + n_pad, device=self.device)
        span = self.max_length  # key slots attended to: all on CUDA (fixed graph shapes) ...
        if self.device.type != "cuda":  # ... the cache and these tokens, rounded up, on the CPU
            span = min(span, -(-(start + n_pad) // SPAN) * SPAN)
        attention = self._additive_mask(mask, n, n_pad, span)
        if compiled:
            key = (n_pad, b_pad)
            graphs = counters["stats"]["unique_graphs"]
            calls = self._calls.get(key, 0)
            self._calls[key] = calls + 1
            captures = self.cuda_graphs == "manual" and key not in self._graphs
            hidden = self._run_compiled(key, (tokens_in, positions_in, slots, attention))
            # A call that compiled a graph, captured one, or (inductor's CUDA graphs, on a shape's
            # second call) recorded one: ``feed`` books it as compile time.
            self.compiling = (counters["stats"]["unique_graphs"] != graphs or captures
                              or (self.cuda_graphs == "inductor" and calls < 2))
        else:
            with self.eager():
                hidden = self.static(tokens_in, positions_in, slots, attention)
        self._length, self._rows = start + n, b
        return self._head(hidden[:b, n - keep:n])

    def _run_compiled(self, key: tuple[int, int], inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.cuda_graphs == "inductor":
            torch.compiler.cudagraph_mark_step_begin()
        if self.cuda_graphs != "manual":
            return self._compiled(*inputs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static_inputs, output = self._graphs[key]
        for static, value in zip(static_inputs, inputs):
            static.copy_(value)
        graph.replay()
        return output

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        """A CUDA graph of the compiled forward on copies of ``inputs`` (later calls copy theirs
        in). Warm-up runs compile it on a side stream; they write this call's own keys and values,
        which the replay writes again."""
        static_inputs = tuple(x.clone() for x in inputs)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._compiled(*static_inputs)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool: freed with the graph (see _allocate)
            output = self._compiled(*static_inputs)
        return graph, static_inputs, output

    def _additive_mask(self, tree_mask: torch.Tensor | None, n: int, n_pad: int, span: int) -> torch.Tensor:
        """[1, 1, n_pad, span]: 0 where a new token may attend, dtype-min elsewhere. Padded
        queries copy the last real one (their output is dropped; a fully masked row would be NaN)."""
        start = self._length
        allowed = torch.zeros(n_pad, span, dtype=torch.bool)
        allowed[:, :start] = True
        if tree_mask is None:
            allowed[:n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        else:
            m = tree_mask.shape[1]
            allowed[:n, start + n - m:start + n] = tree_mask.to("cpu", torch.bool)
        allowed[n:] = allowed[n - 1]
        dtype = self.static.keys0.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask.to(self.device, non_blocking=True)[None, None]

    def _allocate(self, rows: int) -> None:
        self.static.allocate(rows)
        self._calls.clear()  # new buffers: every bucket compiles (and is captured) again
        self._graphs.clear()

    def crop(self, length: int) -> None:
        self._length = min(self._length, length)

    def select_rows(self, rows) -> None:
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        if len(rows) > self.static.rows:
            self._allocate(bucket(len(rows), ROW_BUCKETS) or len(rows))
        for keys, values in self.static.buffers_kv():
            for buffer in (keys, values):
                buffer[: len(rows), :, : self._length] = buffer[rows, :, : self._length]
        self._rows = len(rows)

    def keep_positions(self, positions) -> None:
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        for keys, values in self.static.buffers_kv():
            for buffer in (keys, values):
                buffer[: self._rows, :, : len(positions)] = buffer[: self._rows, :, positions]
        self._length = len(positions)
