"""The llamacpp backend's runner: a GGUF model run by llama.cpp, without dequantizing it
(``pair.backend=llamacpp``, through llama-cpp-python's low-level API).

On a memory-bound CPU a one-token step costs about the bytes of its weights: llama.cpp reads the
pair's Q4_K_M files as they are, where the torch backends stream bf16 copies of ~3.5x the bytes.
Only the forwards and the KV cache move here; sampling, acceptance and every decoder stay ours.

How our runner contract maps onto llama.cpp's unified KV cache, where a cell holds one position's
keys and values and the set of sequence ids that may see it, and a token attends to the cells that
carry its *first* sequence id at positions up to its own:

- **Rows** (beams) are sequences: row r's tokens carry its sequence id, and rows share the cells of
  their common prefix. ``select_rows`` copies a sequence id (a bookkeeping edit, no KV copy) for a
  repeated row and drops the ids of the rows no longer kept.
- **Token trees**: every tree node fed gets a sequence id of its own, and that id is added to the
  cells the node may see (the committed prefix, its ancestors) and to its own cell. A node then
  sees exactly its ancestors, as the tree mask says. Tree depths are positions, so the accepted
  path of a tree already sits at the positions a linear cache would give it: ``keep_positions``
  adds the row's id to the path's cells and drops every other id (``llama_memory_seq_keep``).
- Masks that are not token trees (a token that sees a key its parent does not, or a later one)
  cannot be written this way and are refused; the decoders feed only trees.

Logits reach torch once per position that needs them (``keep``), as float32. See docs/backends.md.
"""

from __future__ import annotations

import collections
import ctypes
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtad.errors import UserError
from mtad.runners.base import GGUF_FILE, KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS, ForwardCounter, Runner
from mtad.runners.cpu import cpu_flags, machine_cores

LLAMA_CPP_PYTHON = "0.3.36"  # the llama-cpp-python release scripts/build_llamacpp.sh builds
SEQUENCES = 128  # sequence ids a runner holds: its rows plus the tree nodes in its cache at once
KV_TYPES = {"f16": 1, "f32": 0}  # ggml types of the cached keys and values: llama.cpp's default f16; f32 for
# the tests, which hold this backend's logits to a float32 transformers model's
CELL_ROOM = 256  # KV cells beyond max_length: beams and tree nodes hold cells beside the row's

# ggml's x86 CPU variants (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS) and the /proc/cpuinfo
# flags each needs. sapphirerapids (AMX) is left out: its AMX int8 kernel died with SIGILL on the
# first batched matmul in these VMs, whose CPUs report AMX (../shared/reference/llamacpp-notes.md).
_BASE = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")
_AVX512 = _BASE + ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
CPU_VARIANTS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": ("sse4_2",),
    "sandybridge": ("sse4_2", "avx"),
    "ivybridge": ("sse4_2", "avx", "f16c"),
    "piledriver": ("sse4_2", "avx", "f16c", "fma"),
    "haswell": _BASE,
    "alderlake": _BASE + ("avx_vnni",),
    "skylakex": _AVX512,
    "cannonlake": _AVX512 + ("avx512vbmi",),
    "cascadelake": _AVX512 + ("avx512_vnni",),
    "icelake": _AVX512 + ("avx512vbmi", "avx512_vnni"),
    "cooperlake": _AVX512 + ("avx512_vnni", "avx512_bf16"),
    "zen4": _AVX512 + ("avx512vbmi", "avx512_vnni", "avx512_bf16"),
}

_GGML_LOG_ERROR = 4  # enum ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT
_errors: collections.deque[str] = collections.deque(maxlen=8)  # llama.cpp's last error lines
_loaded = None  # the llama_cpp module once its CPU backend is loaded
_variant: str | None = None  # the ggml CPU variant loaded (None: a build with its CPU backend linked in)


def cpu_variant(flags: set[str], available: dict[str, Path]) -> Path:
    """The library of the ggml CPU variant this CPU runs that uses the most of its features."""
    runnable = [name for name in available if name in CPU_VARIANTS and set(CPU_VARIANTS[name]) <= flags]
    if not runnable:
        raise UserError(f"no ggml CPU variant of this build runs on this CPU (built: {', '.join(sorted(available))})")
    return available[max(runnable, key=lambda name: len(CPU_VARIANTS[name]))]


def _variant_libraries(package: Path) -> dict[str, Path]:
    """ggml's CPU variant libraries of a runtime-dispatch build: llama-cpp-python installs them
    in site-packages/bin (or beside its own libraries)."""
    found = {}
    for folder in (package / "lib", package.parent / "bin", package.parent / "lib"):
        for path in folder.glob("libggml-cpu-*.so"):
            found.setdefault(path.name[len("libggml-cpu-"):-len(".so")], path)
    return found


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log(level, text, _user):
    """llama.cpp's log: silent, but its errors are kept for the exceptions that follow them."""
    if level == _GGML_LOG_ERROR and text:
        _errors.append(text.decode(errors="replace").strip())


def last_error() -> str:
    return f" (llama.cpp: {' '.join(_errors)})" if _errors else ""


def _mapped(name: str) -> Path | None:
    """The file of shared library ``name`` (``libggml.so``, any version suffix) this process has
    mapped: the wheel holds libggml.so and libggml.so.0 as two copies, and only the one libllama
    linked (by its soname) holds the backend registry llama.cpp reads."""
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1]
            if Path(path).name == name or Path(path).name.startswith(name + "."):
                return Path(path)
    except OSError:
        pass
    return None


def llama_cpp_module():
    """llama-cpp-python, imported once, with its log silenced and, in a build of ggml's runtime
    CPU variants, the variant for this CPU loaded (never AMX: see CPU_VARIANTS)."""
    global _loaded, _variant
    if _loaded is not None:
        return _loaded
    try:
        import llama_cpp
    except ImportError:
        raise UserError("pair.backend=llamacpp needs llama-cpp-python: `make setup` builds it for this CPU "
                        "(scripts/build_llamacpp.sh)") from None
    llama_cpp.llama_log_set(_log, None)  # first: loading a CPU variant logs too
    package = Path(llama_cpp.__file__).parent
    libggml = ctypes.CDLL(str(_mapped("libggml.so") or package / "lib" / "libggml.so"))
    libggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if libggml.ggml_backend_reg_count() == 0:  # no CPU backend linked in: load a variant
        path = cpu_variant(cpu_flags(), _variant_libraries(package))
        _variant = path.name[len("libggml-cpu-"):-len(".so")]
        libggml.ggml_backend_load.restype = ctypes.c_void_p
        libggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        if not libggml.ggml_backend_load(str(path).encode()):
            raise UserError(f"llama.cpp could not load its CPU backend {path}")
    llama_cpp.llama_backend_init()
    _loaded = llama_cpp
    return llama_cpp


def check_gguf(path: Path) -> None:
    """One ``UserError`` unless ``path`` is a readable file that starts like a GGUF."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


def gguf_weight_bytes(path: str | Path) -> int:
    """Bytes of a GGUF file's tensors: what a forward streams from memory (the roofline's numerator)."""
    import gguf

    return sum(int(tensor.n_bytes) for tensor in gguf.GGUFReader(str(path)).tensors)


@dataclass(frozen=True)
class _Node:
    """A tree node in the cache: its own sequence id, its position, and what it sees: the first
    ``base`` row positions and the node slots of ``chain`` (its ancestors, root first)."""

    seq: int
    pos: int
    base: int
    chain: tuple[int, ...]


class LlamaCppRunner(Runner):
    """One GGUF model in one llama.cpp context with a unified KV cache of ``max_length`` +
    ``CELL_ROOM`` cells of ``kv_type``, ``threads`` threads (default: the machine's cores) and up
    to ``sequences`` sequence ids (rows and cached tree nodes). ``head_rows`` sets the logits of ids >= N to -inf,
    as on the other backends; llama.cpp still computes the whole head."""

    capabilities = frozenset({TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS, GGUF_FILE})
    devices = ("cpu",)
    quantizations = ("none",)  # the GGUF file's own weights, never re-quantized

    def __init__(self, path: str | Path, head_rows: int | None = None, max_length: int = 2048,
                 threads: int | None = None, sequences: int = SEQUENCES, kv_type: str = "f16",
                 flash_attn: bool = False, temporary: tempfile.TemporaryDirectory | None = None):
        super().__init__()
        lib = self._lib = llama_cpp_module()
        check_gguf(path)
        threads = threads or machine_cores()
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
        if not 1 <= sequences <= 256:
            raise UserError(f"a llama.cpp context holds 1 to 256 sequences, not {sequences}")
        self.path, self.threads, self.sequences, self.flash_attn = Path(path), threads, sequences, flash_attn
        self.temporary = temporary  # the temporary folder holding a written file, kept as long as the runner
        self.kv_type = kv_type
        self.device = torch.device("cpu")
        self.capacity = max_length
        self.cells = max_length + CELL_ROOM

        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise UserError(f"llama.cpp could not load {path}{last_error()}")
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = self.cells  # any feed fits one llama_decode
        cparams.n_ubatch = min(512, self.cells)
        cparams.n_seq_max = sequences
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.type_k = cparams.type_v = KV_TYPES[kv_type]
        cparams.flash_attn_type = int(flash_attn)  # llama-cpp-python's default: off (its Llama class's too)
        cparams.kv_unified = True  # one cache: rows and tree nodes share their prefix's cells
        cparams.no_perf = True
        context = lib.llama_init_from_model(model, cparams)
        if not context:
            lib.llama_model_free(model)
            raise UserError(f"llama.cpp could not make a context of {self.cells} cells for {path}{last_error()}")
        batch = lib.llama_batch_init(self.cells, 0, sequences)
        self._model, self._ctx, self._batch = model, context, batch
        self._finalizer = weakref.finalize(self, _free, lib, model, context, batch)
        self._memory = lib.llama_get_memory(context)
        self.vocab_size = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
        if head_rows is not None and not 1 <= head_rows <= self.vocab_size:
            raise UserError(f"head_rows must lie in [1, {self.vocab_size}], got {head_rows}")
        self.head_rows = None if head_rows == self.vocab_size else head_rows
        # numpy views of the batch's arrays, written in place before each llama_decode
        self._tokens = np.ctypeslib.as_array(batch.token, shape=(self.cells,))
        self._pos = np.ctypeslib.as_array(batch.pos, shape=(self.cells,))
        self._n_seq = np.ctypeslib.as_array(batch.n_seq_id, shape=(self.cells,))
        self._outputs = np.ctypeslib.as_array(batch.logits, shape=(self.cells,))
        self._seqs = [np.ctypeslib.as_array(batch.seq_id[i], shape=(sequences,)) for i in range(self.cells)]
        self.reset()

    def gguf_file(self) -> Path:
        return self.path

    # -- the cache's state ----------------------------------------------------------------
    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._rows = [0]          # each row's sequence id
        self._free = list(range(self.sequences - 1, 0, -1))  # free ids, popped from the end
        self._linear = 0          # row positions 0.._linear-1: slot == position, every row
        self._nodes: list[_Node] = []  # tree nodes, at slots _linear, _linear + 1, ...
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return self._linear + len(self._nodes)

    def _alloc(self) -> int:
        if not self._free:
            raise UserError(f"pair.backend=llamacpp: more than {self.sequences} rows and tree nodes at once "
                            f"(each needs a llama.cpp sequence); use a smaller tree or beam width")
        return self._free.pop()

    def _release(self, seq: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self._free.append(seq)

    def _drop_nodes(self, keep: int = 0) -> None:
        """Drop the cached tree nodes from the ``keep``-th on (later nodes never feed earlier ones)."""
        for node in self._nodes[keep:]:
            self._release(node.seq)
        del self._nodes[keep:]

    # -- feeding ----------------------------------------------------------------------------
    def _forward(self, tokens, positions, mask, keep):
        batch, n = tokens.shape
        ids, pos = tokens.tolist(), positions.tolist()
        if batch != len(self._rows):
            if self.length:
                raise ValueError(f"llamacpp runner: {batch} rows fed to a cache of {len(self._rows)}")
            for seq in self._rows[1:]:  # an empty cache takes any number of rows
                self._free.append(seq)
            self._rows = [self._rows[0]] + [self._alloc() for _ in range(batch - 1)]
        if mask is None:
            if self._nodes:
                raise ValueError("llamacpp runner: a causal feed after tree nodes (keep_positions or crop first)")
            expected = list(range(self._linear, self._linear + n))
            if any(row != expected for row in pos):
                raise ValueError(f"llamacpp runner: a causal feed takes positions {self._linear}.. (its cache length)")
            entries = [(ids[r][j], self._linear + j, [self._rows[r]], j >= n - keep)
                       for r in range(batch) for j in range(n)]
            logits = self._decode(entries)
            self._linear += n
        else:
            if batch != 1:
                raise ValueError("llamacpp runner: a token tree is fed for one row")
            nodes: list[_Node] = []  # this feed's, given back if it fails at any step
            try:
                entries, linear = self._tree_entries(ids[0], pos[0], mask.tolist(), keep, nodes)
                logits = self._decode(entries)
            except BaseException:
                for node in nodes:
                    self._release(node.seq)
                raise
            self._linear = linear
            self._nodes.extend(nodes)
        logits = logits.view(batch, keep, self.vocab_size)
        if self.head_rows is not None:
            logits[..., self.head_rows:] = float("-inf")
        return logits

    def _tree_entries(self, ids: list[int], pos: list[int], allowed: list[list[bool]], keep: int,
                      new: list[_Node]):
        """The batch entries of a masked feed and the row length after it; its new nodes go to ``new``.

        A new token whose mask sees every earlier key, before any tree node, extends the row. Any
        other token is a node: it must see exactly its parent (its latest visible key) and what
        the parent sees, at the parent's position plus one. Its sequence id is added before the
        decode to the cached cells it sees (``llama_memory_seq_cp``) and, in the batch, to the new
        tokens it sees."""
        n, m = len(ids), len(allowed[0])
        cached, row = self.length, self._rows[0]
        first = cached + n - m  # the first slot the mask covers; earlier keys are always visible
        linear, nodes = self._linear, {}  # slot -> _Node, this feed's
        seq_lists = [[] for _ in range(n)]
        # keys before the window: row positions, then (when the window starts past the row) cached nodes
        head, head_nodes = min(first, self._linear), tuple(range(self._linear, first))
        for i in range(n):
            slot = cached + i
            if not allowed[i][slot - first] or any(allowed[i][slot - first + 1:]):
                raise ValueError(f"llamacpp runner: tree token {i} must see itself and no later token")
            window = [s for s in range(first, slot) if allowed[i][s - first]]
            row_keys = [s for s in window if s < linear]  # none when the window starts past the row
            if row_keys != list(range(head, head + len(row_keys))):
                raise ValueError(f"llamacpp runner: tree token {i} skips a committed position")
            base, chain = head + len(row_keys), head_nodes + tuple(s for s in window if s >= linear)
            if not self._nodes and not new and base == slot and pos[i] == slot:
                linear += 1  # the row goes on
                seq_lists[i].append(row)
                continue
            parent = self._node_at(chain[-1], nodes) if chain else None
            if parent is not None and (parent.base != base or parent.chain != chain[:-1]):
                raise ValueError(f"llamacpp runner: tree token {i} sees more or less than its parent and the parent")
            if pos[i] != base + len(chain):
                raise ValueError(f"llamacpp runner: tree token {i} is at position {pos[i]}, not its depth "
                                 f"{base + len(chain)}")
            node = _Node(self._alloc(), pos[i], base, chain)
            new.append(node)
            nodes[slot] = node
            seq_lists[i].append(node.seq)
            for s in chain:  # its ancestors fed now carry its id in the batch
                if s >= cached:
                    seq_lists[s - cached].append(node.seq)
            for s in range(cached, base):  # so do the row tokens fed now that it sees
                seq_lists[s - cached].append(node.seq)
        memory, lib = self._memory, self._lib
        for node in new:  # the cached cells each new node sees get its id
            if min(node.base, self._linear):
                lib.llama_memory_seq_cp(memory, row, node.seq, 0, min(node.base, self._linear))
            for s in node.chain:
                if s < cached:
                    ancestor = self._nodes[s - self._linear]
                    lib.llama_memory_seq_cp(memory, ancestor.seq, node.seq, ancestor.pos, ancestor.pos + 1)
        entries = [(ids[i], pos[i], seq_lists[i], i >= n - keep) for i in range(n)]
        return entries, linear

    def _node_at(self, slot: int, new: dict[int, _Node]) -> _Node:
        return new[slot] if slot in new else self._nodes[slot - self._linear]

    def _decode(self, entries) -> torch.Tensor:
        """One ``llama_decode`` of (token, position, sequence ids, wants logits) entries; the
        logits [outputs, V] of the entries that want them, in order, as float32."""
        n = len(entries)
        if n > self.cells:
            raise ValueError(f"llamacpp runner: a feed of {n} tokens exceeds the {self.cells}-cell context")
        for i, (token, position, seqs, output) in enumerate(entries):
            self._tokens[i], self._pos[i], self._outputs[i] = token, position, output
            self._n_seq[i] = len(seqs)
            self._seqs[i][: len(seqs)] = seqs
        self._batch.n_tokens = n
        _errors.clear()
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            reason = {1: f"no room in the KV cache of {self.cells} cells", 2: "aborted",
                      -1: "invalid input batch"}.get(status, f"error {status}")
            raise RuntimeError(f"llama_decode failed: {reason}{last_error()}")
        outputs = sum(1 for entry in entries if entry[3])
        logits = self._lib.llama_get_logits(self._ctx)
        return torch.from_numpy(np.ctypeslib.as_array(logits, shape=(outputs, self.vocab_size)).copy())

    # -- cache edits ------------------------------------------------------------------------
    def crop(self, length: int) -> None:
        if length < 0:
            raise ValueError(f"crop to {length} positions")
        if length >= self._linear:
            self._drop_nodes(length - self._linear)
            return
        self._drop_nodes()
        for seq in self._rows:
            self._lib.llama_memory_seq_rm(self._memory, seq, length, -1)
        self._linear = length

    def select_rows(self, rows) -> None:
        if self._nodes:
            raise ValueError("llamacpp runner: select_rows with tree nodes cached")
        old, kept, new = self._rows, set(), []
        for r in torch.as_tensor(rows).tolist():
            seq = old[r]
            if seq in kept:  # a repeated row: a second id on the same cells
                copy = self._alloc()
                self._lib.llama_memory_seq_cp(self._memory, seq, copy, -1, -1)
                new.append(copy)
            else:
                kept.add(seq)
                new.append(seq)
        for seq in old:
            if seq not in kept:
                self._release(seq)
        self._rows = new

    def keep_positions(self, positions) -> None:
        """Keep a row prefix, or a row prefix plus one root-down path of the cached tree: the only
        kept sets whose positions stay their slots (llama.cpp keys carry their rotary position)."""
        kept = torch.as_tensor(positions).tolist()
        base = sum(1 for s in kept if s < self._linear)
        path = tuple(kept[base:])
        if kept[:base] != list(range(base)) or any(s < self._linear or s >= self.length for s in path):
            raise ValueError("llamacpp runner keeps a row prefix plus a tree path only")
        if not path:
            self.crop(base)
            return
        last = self._nodes[path[-1] - self._linear]
        if last.base != base or last.chain + (path[-1],) != path or len(self._rows) != 1:
            raise ValueError("llamacpp runner keeps a row prefix plus a tree path only")
        lib, memory, row = self._lib, self._memory, self._rows[0]
        if base < self._linear:
            lib.llama_memory_seq_rm(memory, row, base, -1)
        lib.llama_memory_seq_cp(memory, last.seq, row, base, -1)  # the path's cells join the row
        lib.llama_memory_seq_keep(memory, row)  # every other id goes; cells left without one are freed
        self._free.extend(node.seq for node in self._nodes)
        self._nodes = []
        self._linear = base + len(path)


def _free(lib, model, context, batch) -> None:
    lib.llama_batch_free(batch)
    lib.llama_free(context)
    lib.llama_model_free(model)


def build_tag() -> str:
    """llama-cpp-python's version and the ggml CPU variant loaded: what decides this backend's
    numerics besides the file (a record's fingerprint holds it)."""
    lib = llama_cpp_module()
    return f"llama-cpp-python {lib.__version__}" + (f", ggml-cpu-{_variant}" if _variant else "")


@dataclass
class GGUFPair:
    """A pair's two GGUF files, its tokenizer and stop ids; ``folder``, the temporary folder of
    files written for it (the tiny pair), goes when the runners that hold it do."""

    target: Path
    draft: Path
    tokenizer: object
    stop_ids: tuple[int, ...]
    folder: tempfile.TemporaryDirectory | None = None


def gguf_pair(cfg) -> GGUFPair:
    """The GGUF files of ``cfg``'s models: a prepared model's ``model.gguf`` (``make prepare``
    keeps it), the one ``.gguf`` file of a local model folder, or the tiny pair written to
    float32 GGUF files. Tokenizer and stop ids come from the target's folder, as on the other
    backends."""
    from mtad.runners.gguf_export import write_gguf
    from mtad.runners.hf import TINY_PREFIX, check_same_tokenizer, load_models, load_tokenizer, stop_ids

    if cfg.target.startswith(TINY_PREFIX) and cfg.draft.startswith(TINY_PREFIX):
        models = load_models(cfg)
        folder = tempfile.TemporaryDirectory(prefix="mtad-gguf-")
        target, draft = (write_gguf(m, Path(folder.name) / f"{role}.gguf")
                         for m, role in ((models.target, "target"), (models.draft, "draft")))
        return GGUFPair(target, draft, models.tokenizer, models.stop_ids, folder)
    from transformers import AutoConfig, GenerationConfig

    from mtad.runners.prepare import resolve_source

    folders = [Path(resolve_source(source)) for source in (cfg.target, cfg.draft)]
    files = [_gguf_in(folder, source) for folder, source in zip(folders, (cfg.target, cfg.draft))]
    tokenizer = load_tokenizer(str(folders[0]))
    check_same_tokenizer(tokenizer, load_tokenizer(str(folders[1])), cfg)
    try:
        generation = GenerationConfig.from_pretrained(folders[0])
    except OSError:  # a folder without generation_config.json
        generation = None
    configs = (generation, AutoConfig.from_pretrained(folders[0]))
    return GGUFPair(files[0], files[1], tokenizer, stop_ids(configs, tokenizer, cfg))


def _gguf_in(folder: Path, source: str) -> Path:
    from mtad.runners.prepare import GGUF_FILE

    if not folder.is_dir():
        raise UserError(f"pair.backend=llamacpp runs local GGUF files; {source} is not a local folder "
                        f"(use prepared:<name> or a folder holding one .gguf file and its tokenizer)")
    found = [folder / GGUF_FILE] if (folder / GGUF_FILE).exists() else sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        raise UserError(f"pair.backend=llamacpp needs one .gguf file in {folder}, found {len(found)}")
    check_gguf(found[0])
    return found[0]
