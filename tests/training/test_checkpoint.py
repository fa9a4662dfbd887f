"""Checkpoints: round trip without pickle, the architecture by name (old checkpoints are
dieleman, an unknown name is refused), refusal of another front end, a Lightning-free load."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from audio.config import FRONT_END, FrontEndMismatchError
from training.checkpoint import (
    CONFIG_FILE,
    MANIFEST_KIND,
    WEIGHTS_FILE,
    load_encoder,
    save_encoder,
)
from training.encoders.base import ContentEncoder
from training.encoders.dieleman import DielemanDims, DielemanEncoder

REPO_ROOT = Path(__file__).resolve().parents[2]
DIMS = DielemanDims(n_factors=6, channels=(8, 8, 16), hidden=(16,))


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, ContentEncoder]:
    torch.manual_seed(3)
    encoder = DielemanEncoder(DIMS)
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        encoder.train().forward_mel(torch.randn(4, FRONT_END.n_mels, 140) - 4)
    pooled = 3 * DIMS.channels[-1]
    encoder.set_content_projection(torch.randn(pooled, pooled))
    folder = tmp_path / "cnn"
    save_encoder(encoder.eval(), folder, parents={"factorization": "abc"})
    return folder, encoder


def test_round_trip(saved: tuple[Path, ContentEncoder]) -> None:
    folder, encoder = saved
    loaded = load_encoder(folder)
    assert loaded.dims == DIMS and not loaded.training
    waveform = 0.1 * torch.randn(2, FRONT_END.min_samples + 5000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveform), encoder(waveform))
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    assert saved_json["front_end"] == FRONT_END.to_dict()
    # The weights file holds tensors only: the restricted unpickler accepts it.
    assert set(torch.load(folder / WEIGHTS_FILE, weights_only=True)) == set(encoder.state_dict())


def test_the_content_projection_is_saved(saved: tuple[Path, ContentEncoder]) -> None:
    folder, encoder = saved
    loaded = load_encoder(folder)
    mel = torch.randn(2, FRONT_END.n_mels, 140)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed_mel(mel)[1], encoder.eval().embed_mel(mel)[1])
    assert json.loads((folder / CONFIG_FILE).read_text())["format"] == 3


def _rewrite_config(folder: Path, config: dict) -> None:
    """Replace `encoder.json` and re-seal the manifest over it (as an older code wrote it)."""
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    write_manifest(folder, kind=MANIFEST_KIND, files=read_manifest(folder, verify=False)["files"])


def test_the_architecture_is_saved_and_built_again(saved: tuple[Path, ContentEncoder]) -> None:
    folder, encoder = saved
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    assert saved_json["architecture"] == "dieleman"
    assert read_manifest(folder)["parameters"]["architecture"] == "dieleman"
    assert type(load_encoder(folder)) is type(encoder)


def test_a_format_2_checkpoint_is_a_dieleman(saved: tuple[Path, ContentEncoder]) -> None:
    """An `encoder.json` as the code before architectures wrote it (format 2: format, front
    end, dims; no architecture) loads as `dieleman` and gives the same vectors."""
    folder, encoder = saved
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    legacy = {key: saved_json[key] for key in ("format", "front_end", "dims")}
    _rewrite_config(folder, {**legacy, "format": 2})
    loaded = load_encoder(folder)
    assert loaded.name == "dieleman" and loaded.dims == DIMS
    mel = torch.randn(2, FRONT_END.n_mels, 140)
    with torch.no_grad():
        for mine, theirs in zip(loaded.embed_mel(mel), encoder.eval().embed_mel(mel), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_an_unknown_architecture_is_refused_naming_the_known_ones(
    saved: tuple[Path, ContentEncoder],
) -> None:
    folder, _ = saved
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    _rewrite_config(folder, {**saved_json, "architecture": "wavenet"})
    with pytest.raises(
        ArtifactError, match=r"unknown encoder architecture 'wavenet' \(available: dieleman"
    ):
        load_encoder(folder)
    _rewrite_config(folder, {**saved_json, "dims": {**saved_json["dims"], "heads": 8}})
    with pytest.raises(ArtifactError, match="dieleman dims .* unknown fields \\['heads'\\]"):
        load_encoder(folder)


def test_a_format_1_checkpoint_embeds_by_its_factors(tmp_path: Path) -> None:
    """Saved before the content embedding existed (no `content_dims`, no projection): it
    loads as an encoder whose content embedding is its factors, what its versions indexed."""
    torch.manual_seed(4)
    plain = DielemanEncoder(dataclasses.replace(DIMS, content_dims=None)).eval()
    folder = tmp_path / "old"
    save_encoder(plain, folder)
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    del saved_json["dims"]["content_dims"], saved_json["architecture"]
    (folder / CONFIG_FILE).write_text(json.dumps({**saved_json, "format": 1}))
    write_manifest(folder, kind=MANIFEST_KIND, files=read_manifest(folder, verify=False)["files"])
    loaded = load_encoder(folder)
    assert loaded.dims.content_dims is None and loaded.dims.embedding_dims == DIMS.n_factors
    mel = torch.randn(1, FRONT_END.n_mels, 140)
    with torch.no_grad():
        factors, content = loaded.embed_mel(mel)
        torch.testing.assert_close(factors, plain.forward_mel(mel))
    assert content is factors
    (folder / CONFIG_FILE).write_text(json.dumps({**saved_json, "format": 4}))
    write_manifest(folder, kind=MANIFEST_KIND, files=read_manifest(folder, verify=False)["files"])
    with pytest.raises(ArtifactError, match="checkpoint format 4"):
        load_encoder(folder)


def test_other_front_end_is_refused(saved: tuple[Path, ContentEncoder]) -> None:
    folder, _ = saved
    other = dataclasses.replace(FRONT_END, hop_length=256)
    with pytest.raises(FrontEndMismatchError, match="hop_length: saved 512, in use 256"):
        load_encoder(folder, other)


def test_altered_or_unfinished_checkpoint_is_refused(saved: tuple[Path, ContentEncoder]) -> None:
    folder, _ = saved
    with open(folder / WEIGHTS_FILE, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        load_encoder(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="unfinished"):
        load_encoder(folder)


def test_serving_load_imports_neither_lightning_nor_implicit(
    saved: tuple[Path, ContentEncoder],
) -> None:
    folder, _ = saved
    script = (
        "import sys, torch\n"
        "from training.checkpoint import load_encoder\n"
        f"encoder = load_encoder({str(folder)!r})\n"
        "with torch.no_grad():\n"
        "    assert encoder(torch.zeros(70000) + 0.01).shape == (1, 6)\n"
        "heavy = ('pytorch_lightning', 'lightning', 'implicit')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
