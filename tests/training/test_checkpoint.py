"""Checkpoints: round trip without pickle, refusal of another front end, a Lightning-free load."""

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
from training.encoder import ContentEncoder, EncoderDims

REPO_ROOT = Path(__file__).resolve().parents[2]
DIMS = EncoderDims(n_factors=6, channels=(8, 8, 16), hidden=(16,))


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, ContentEncoder]:
    torch.manual_seed(3)
    encoder = ContentEncoder(DIMS)
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
    assert json.loads((folder / CONFIG_FILE).read_text())["format"] == 2


def test_a_format_1_checkpoint_embeds_by_its_factors(tmp_path: Path) -> None:
    """Saved before the content embedding existed (no `content_dims`, no projection): it
    loads as an encoder whose content embedding is its factors, what its versions indexed."""
    torch.manual_seed(4)
    plain = ContentEncoder(dataclasses.replace(DIMS, content_dims=None)).eval()
    folder = tmp_path / "old"
    save_encoder(plain, folder)
    saved_json = json.loads((folder / CONFIG_FILE).read_text())
    del saved_json["dims"]["content_dims"]
    (folder / CONFIG_FILE).write_text(json.dumps({**saved_json, "format": 1}))
    write_manifest(folder, kind=MANIFEST_KIND, files=read_manifest(folder, verify=False)["files"])
    loaded = load_encoder(folder)
    assert loaded.dims.content_dims is None and loaded.dims.embedding_dims == DIMS.n_factors
    mel = torch.randn(1, FRONT_END.n_mels, 140)
    with torch.no_grad():
        factors, content = loaded.embed_mel(mel)
        torch.testing.assert_close(factors, plain.forward_mel(mel))
    assert content is factors
    (folder / CONFIG_FILE).write_text(json.dumps({**saved_json, "format": 3}))
    write_manifest(folder, kind=MANIFEST_KIND, files=read_manifest(folder, verify=False)["files"])
    with pytest.raises(ArtifactError, match="checkpoint format 3"):
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
