"""The backend catalogue: ``pair.backend`` names -> the classes that load a pair's models into runners.

A backend owns both models' forwards and KV caches. It says what its runners can do (its
``runner_class``'s capabilities, devices and quantizations), loads a ``PairConfig`` into a
``Pair``, and has an integer ``version`` that enters the id of every run it makes
(``mtad/job/records.py``): bump it in the same commit as any change to what its runners compute.
docs/backends.md states the runner contract and how to add a backend.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mtad.errors import UserError
from mtad.registry import by_name, register
from mtad.runners.base import Runner, require_capabilities
from mtad.runners.eager import EagerRunner
from mtad.runners.hf import load_models
from mtad.runners.cpu import machine_cores
from mtad.runners.llamacpp import SEQUENCES, LlamaCppRunner, gguf_pair
from mtad.runners.matmul import MATMUL_VERSION
from mtad.runners.pair import Pair
from mtad.runners.quant import QUANT_VERSION
from mtad.runners.static import StaticRunner

if TYPE_CHECKING:
    from mtad.runners.load import PairConfig


class Backend(ABC):
    """One way to run a pair's models. Class-level only: a backend holds no state of its own."""

    name: ClassVar[str]
    version: ClassVar[int]  # bumped with any change to what its runners compute (the run id holds it)
    runner_class: ClassVar[type[Runner]]  # its runners' class: what they can do
    threads: ClassVar[bool] = False  # whether it takes pair.threads (its own thread count)

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        return cls.runner_class.capabilities

    @classmethod
    def check(cls, cfg: PairConfig) -> None:
        """One ``UserError`` unless this backend runs ``cfg``'s device and quantizations (before loading)."""
        if cfg.threads is not None and not cls.threads:
            raise UserError(f"pair.threads sets llama.cpp's threads (pair.backend=llamacpp); pair.backend={cls.name} "
                            "runs torch's (OMP_NUM_THREADS)")
        devices, device = cls.runner_class.devices, cfg.resolved_device()
        if devices is not None and device.type not in devices:
            raise UserError(f"pair.backend={cls.name} runs on {', '.join(devices)}, not {device}")
        for role in ("target", "draft"):
            quant = getattr(cfg, f"{role}_quant")
            if quant not in cls.runner_class.quantizations:
                raise UserError(f"pair.backend={cls.name} does not run pair.{role}_quant={quant} (it runs: "
                                f"{', '.join(cls.runner_class.quantizations)})")

    @classmethod
    def require(cls, needs, user: str) -> None:
        """One ``UserError`` unless this backend's runners can do all that ``user`` needs (a
        decoder, before any model loads), naming the backends that could."""
        able = [name for name, backend in BACKENDS.items() if set(needs) <= backend.capabilities()]
        require_capabilities(needs, cls.capabilities(), user, f"pair.backend={cls.name}",
                             f" (backends that have it: {', '.join(able)})" if able else "")

    @classmethod
    def check_sequences(cls, sequences: int, user: str) -> None:
        """One ``UserError`` if ``user`` (a decoder) holds more rows and tree nodes at once than
        this backend's runners can (``Decoder.sequences``); most have no such limit."""

    @classmethod
    def code_versions(cls) -> dict[str, int]:
        """The versions of the code a run on this backend goes through, for its run id."""
        return {"backend": cls.version}

    @classmethod
    @abstractmethod
    def load(cls, cfg: PairConfig) -> Pair:
        """The pair ``cfg`` describes, loaded into this backend's runners."""

    @classmethod
    @abstractmethod
    def runner(cls, model, head_rows: int | None = None, **options) -> Runner:
        """This backend's runner around an already loaded torch model (the tests build every
        backend's runner around the tiny test model this way); ``options`` are its runner's own."""


class TransformersBackend(Backend):
    """A backend whose runners wrap transformers models, loaded by the shared code in ``mtad.runners.hf``."""

    @classmethod
    def code_versions(cls) -> dict[str, int]:
        # int8 linear layers and the output-head slice (quant.py), wide bf16 matmuls (matmul.py)
        return {**super().code_versions(), "quant": QUANT_VERSION, "matmul": MATMUL_VERSION}

    @classmethod
    def load(cls, cfg: PairConfig) -> Pair:
        models = load_models(cfg)
        options = cls.runner_options(cfg)
        return Pair(cls.runner(models.target, **options),
                    cls.runner(models.draft, head_rows=cfg.draft_head_rows, **options), name=cfg.label,
                    stop_ids=models.stop_ids, tokenizer=models.tokenizer, chat_template=cfg.chat_template)

    @classmethod
    def runner_options(cls, cfg: PairConfig) -> dict:
        """The runner's own options that a pair config sets."""
        return {}

    @classmethod
    def runner(cls, model, head_rows: int | None = None, **options) -> Runner:
        return cls.runner_class(model, head_rows=head_rows, **options)


class Eager(TransformersBackend):
    """transformers' DynamicCache, one Python module call per operation (mtad/runners/eager.py)."""

    name = "eager"
    version = 1
    runner_class = EagerRunner


class Static(TransformersBackend):
    """Own preallocated KV buffers, the forward compiled per padded shape (mtad/runners/static.py)."""

    name = "static"
    # 2: on CUDA the output head runs inside the CUDA graph, over every padded position (its logits
    # may differ from version 1's by float rounding); on the CPU outputs are bit-identical to 1 (issue 35)
    version = 2
    runner_class = StaticRunner

    @classmethod
    def runner_options(cls, cfg: PairConfig) -> dict:
        return {"max_length": cfg.max_length}


class LlamaCpp(Backend):
    """The GGUF files themselves, run by llama.cpp without dequantizing (mtad/runners/llamacpp.py):
    on a CPU, the regime its users run."""

    name = "llamacpp"
    version = 1
    runner_class = LlamaCppRunner
    threads = True

    @classmethod
    def check(cls, cfg: PairConfig) -> None:
        super().check(cfg)
        if cfg.dtype not in ("auto", "float32"):
            raise UserError(f"pair.backend=llamacpp runs the GGUF file's own types, not pair.dtype={cfg.dtype} "
                            "(auto; the tiny pair is written in float32)")
        if cfg.threads is not None and cfg.threads > machine_cores():
            raise UserError(f"pair.threads={cfg.threads} exceeds this machine's {machine_cores()} cores")

    @classmethod
    def check_sequences(cls, sequences: int, user: str) -> None:
        if sequences > SEQUENCES:
            raise UserError(f"{user} holds {sequences} rows and tree nodes at once; pair.backend=llamacpp gives "
                            f"each a llama.cpp sequence and has {SEQUENCES}: use a smaller tree or width")

    @classmethod
    def load(cls, cfg: PairConfig) -> Pair:
        files = gguf_pair(cfg)
        options = {"max_length": cfg.max_length, "threads": cfg.threads}
        # the tiny pair's written files live as long as the runners: llamacpp_plain opens the target's again
        options = {**options, "temporary": files.folder}
        target = LlamaCppRunner(files.target, **options)
        draft = LlamaCppRunner(files.draft, head_rows=cfg.draft_head_rows, **options)
        return Pair(target, draft, name=cfg.label, stop_ids=files.stop_ids, tokenizer=files.tokenizer,
                    chat_template=cfg.chat_template)

    @classmethod
    def runner(cls, model, head_rows: int | None = None, **options) -> Runner:
        """A runner of ``model`` (a transformers Llama or Qwen2), written to a float32 GGUF first."""
        from mtad.runners.gguf_export import write_gguf

        folder = tempfile.TemporaryDirectory(prefix="mtad-gguf-")  # removed with the runner
        return LlamaCppRunner(write_gguf(model, Path(folder.name) / "model.gguf"), head_rows=head_rows,
                              temporary=folder, **options)


BACKENDS: dict[str, type[Backend]] = by_name("backend", [Eager, Static, LlamaCpp])


def backend(name: str) -> type[Backend]:
    """The backend called ``name``; an unknown name is one ``UserError`` listing the known ones."""
    if name not in BACKENDS:
        raise UserError(f"pair.backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return BACKENDS[name]


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a backend (one defined outside this module: a plug-in, a test's); a name already taken is refused."""
    return register("backend", BACKENDS, cls)

