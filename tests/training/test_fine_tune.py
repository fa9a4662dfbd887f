"""Fine-tuning the CNN from an earlier encoder (the nightly run starts from the served one).

`trained_run` is shared by other tests, so every test trains into a copy of it and uses
its `models/cnn/` as the encoder to start from.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from artifacts.manifest import read_manifest
from audio.config import FRONT_END
from training.checkpoint import MANIFEST_KIND, load_encoder, save_encoder
from training.encoder_fit import CNNSettings, train_encoder
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.run import train_run
from training.run_data import TrainingError, load_run_data

# Other sizes than the init's, and a learning rate of 0: training runs, the weights stay.
FROZEN = CNNSettings(
    dims=DielemanDims(channels=(8, 8, 8), hidden=(8,)),
    epochs=1,
    max_minutes=None,
    lr=0.0,
    crops_per_song=1,
    batch_size=32,
    patience=1,
)


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture
def init_encoder(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run / "models" / "cnn", tmp_path / "init"))


def test_fine_tune_starts_from_the_given_encoder(run_copy: Path, init_encoder: Path) -> None:
    init_manifest = read_manifest(init_encoder, kind=MANIFEST_KIND)
    assert init_manifest["parameters"]["init_from"] is None  # trained from scratch
    assert "init_encoder" not in init_manifest["parents"]
    before = load_encoder(init_encoder)

    manifests = train_run(
        run_copy, cnn=FROZEN, linear=None, kmeans=None, progress=False, init_encoder=init_encoder
    )
    manifest = manifests["cnn"]
    assert manifest["parameters"]["init_from"] == init_manifest["digest"]
    assert manifest["parents"]["init_encoder"] == init_manifest["digest"]
    assert manifest["parents"]["factorization"] == init_manifest["parents"]["factorization"]
    assert manifest["parameters"]["dims"] == before.dims.to_dict() != FROZEN.dims.to_dict()

    after = load_encoder(run_copy / "models" / "cnn")
    assert after.dims == before.dims
    for (name, old), (_, new) in zip(
        before.named_parameters(), after.named_parameters(), strict=True
    ):
        torch.testing.assert_close(new, old, rtol=0, atol=0, msg=name)
    # the fit did run over these weights: batch norm's running statistics moved
    assert any(
        not torch.equal(old, new)
        for (name, old), (_, new) in zip(before.named_buffers(), after.named_buffers(), strict=True)
        if name.endswith("running_mean")
    )


def test_fine_tuning_an_encoder_without_an_embedding_gives_it_one(
    run_copy: Path, init_encoder: Path, tmp_path: Path
) -> None:
    """An encoder saved before the content embedding (its factors were the content space)
    is fine-tuned into one with the run's embedding, fitted; its weights carried over."""
    old = load_encoder(init_encoder).with_content_dims(None)
    save_encoder(old, tmp_path / "old")
    manifests = train_run(
        run_copy,
        cnn=FROZEN,
        linear=None,
        kmeans=None,
        progress=False,
        init_encoder=tmp_path / "old",
    )
    after = load_encoder(run_copy / "models" / "cnn")
    assert old.dims.content_dims is None
    assert after.dims.content_dims == FROZEN.dims.content_dims
    assert manifests["cnn"]["content_space"]["dims"] == after.dims.embedding_dims
    for (name, before), (_, new) in zip(
        old.named_parameters(), after.named_parameters(), strict=True
    ):
        torch.testing.assert_close(new, before, rtol=0, atol=0, msg=name)
    fresh = DielemanEncoder(after.dims).content_projection
    assert not torch.equal(after.content_projection, fresh)  # fitted, not a fresh encoder's


def test_encoder_of_another_factor_count_is_refused(run_copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "narrow"
    save_encoder(
        DielemanEncoder(DielemanDims(n_factors=8, channels=(8, 8, 8), hidden=(8,))), folder
    )
    data = load_run_data(run_copy)
    with pytest.raises(TrainingError, match="predicts 8 factors, the factorization has 16"):
        train_encoder(data, FROZEN, progress=False, init_from=folder)
    # refused before anything was written: the run's own model is untouched
    read_manifest(run_copy / "models" / "cnn", kind=MANIFEST_KIND)


def test_encoder_behind_another_front_end_or_unfinished_is_refused(
    run_copy: Path, init_encoder: Path, tmp_path: Path
) -> None:
    other = dataclasses.replace(FRONT_END, hop_length=256)
    foreign = tmp_path / "foreign"
    save_encoder(DielemanEncoder(DielemanDims(n_factors=16, channels=(8, 8, 8)), other), foreign)
    data = load_run_data(run_copy)
    with pytest.raises(TrainingError, match="hop_length"):
        train_encoder(data, FROZEN, progress=False, init_from=foreign)
    (init_encoder / "manifest.json").unlink()
    with pytest.raises(TrainingError, match="unfinished"):
        train_encoder(data, FROZEN, progress=False, init_from=init_encoder)
