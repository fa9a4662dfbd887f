"""The teacher's weights: fetched, checked, converted and cached; missing -> a clear error."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from training.encoder_fit import CNNSettings, starting_encoder
from training.encoders import build_encoder
from training.encoders.base import EncoderWeightsError
from training.encoders.musicnn import MUSICNN_FRONT_END, Musicnn
from training.encoders.musicnn_weights import (
    CACHE_ENV,
    FETCH_COMMAND,
    FOLDER_NAME,
    WHEEL_NAME,
    WHEEL_SHA256,
    WHEEL_URL,
    MusicnnWeightsError,
    cache_root,
    fetch_weights,
    load_weights,
)
from training.run_data import TrainingError

REFERENCE = (
    Path(__file__).resolve().parents[2] / "assets" / "musicnn" / "msd_musicnn_reference.json"
)


def test_the_cache_lies_where_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "coldstart"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_missing_weights_without_network_name_the_command_to_run(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MusicnnWeightsError, match=f"Run `{FETCH_COMMAND}`") as raised:
        load_weights(root=tmp_path)
    assert WHEEL_URL in str(raised.value)
    with pytest.raises(MusicnnWeightsError, match=FETCH_COMMAND):
        load_weights(root=tmp_path, fetch=False)
    assert not (tmp_path / FOLDER_NAME).exists()
    wheels = tmp_path / "wheels"
    assert not wheels.exists() or not any(wheels.iterdir())  # no half-downloaded wheel left

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    result = CliRunner().invoke(app, ["teacher", "fetch"])
    assert result.exit_code == 1
    assert "error:" in result.output and FETCH_COMMAND in result.output
    assert "Traceback" not in result.output


def test_a_musicnn_msd_encoder_without_its_weights_names_the_command_to_run(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit that starts from the teacher's weights, offline and without a cache: the
    encoders' domain error naming what to run, before any training."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(EncoderWeightsError, match=FETCH_COMMAND):
        build_encoder("musicnn-msd", n_factors=8)
    # what `coldstart train` reports as an error (no traceback)
    data: Any = SimpleNamespace(
        cache=SimpleNamespace(config=MUSICNN_FRONT_END), factorization=SimpleNamespace(n_factors=8)
    )
    with pytest.raises(TrainingError, match=FETCH_COMMAND):
        starting_encoder(data, CNNSettings(encoder="musicnn-msd"), None)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    impostor = tmp_path / WHEEL_NAME
    with zipfile.ZipFile(impostor, "w") as archive:
        archive.writestr("musicnn/configuration.py", "MSD_LABELS = ['rock']\n")
    with pytest.raises(MusicnnWeightsError, match=f"expected {WHEEL_SHA256}"):
        fetch_weights(tmp_path / "cache", copy_of=impostor)
    with pytest.raises(MusicnnWeightsError, match="no such file"):
        fetch_weights(tmp_path / "cache", copy_of=tmp_path / "absent.whl")


def test_tag_names_and_shapes(musicnn_cache: Path) -> None:
    reference = json.loads(REFERENCE.read_text())
    msd = load_weights("MSD_musicnn", musicnn_cache, fetch=False)
    assert msd.tag_names == tuple(reference["tag_names"])  # the wheel's configuration.py
    assert len(msd.tag_names) == len(set(msd.tag_names)) == 50
    assert (msd.tag_names[0], msd.tag_names[-1]) == ("rock", "happy")
    mtt = load_weights("MTT_musicnn", musicnn_cache, fetch=False)
    assert len(mtt.tag_names) == 50 and mtt.tag_names[:2] == ("guitar", "classical")
    assert msd.source == {
        "url": WHEEL_URL,
        "wheel": WHEEL_NAME,
        "wheel_sha256": WHEEL_SHA256,
        "model": "MSD_musicnn",
    }
    network = msd.network()
    mel = torch.zeros(3, 96, 187)
    with torch.inference_mode():
        probabilities = network.tag_probabilities(mel)
    assert probabilities.shape == (3, 50)
    assert bool(((probabilities > 0) & (probabilities < 1)).all())
    # the two models differ, and both hold every weight of the network
    assert not torch.equal(msd.state_dict["tags.1.weight"], mtt.state_dict["tags.1.weight"])
    assert set(msd.state_dict) == set(Musicnn(msd.tag_names).network_weights())
    with pytest.raises(ValueError, match="unknown musicnn model"):
        load_weights("MSD_vgg", musicnn_cache, fetch=False)


def test_damaged_weights_are_refused_then_made_again_from_the_cached_wheel(
    musicnn_cache: Path, tmp_path: Path, offline: None
) -> None:
    (tmp_path / "wheels").mkdir()
    shutil.copy(musicnn_cache / "wheels" / WHEEL_NAME, tmp_path / "wheels" / WHEEL_NAME)
    folder = fetch_weights(tmp_path)  # offline: converted from the wheel in the cache
    expected = load_weights(root=tmp_path, fetch=False).state_dict
    weights = folder / "MSD_musicnn.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(MusicnnWeightsError, match="does not match its manifest"):
        load_weights(root=tmp_path, fetch=False)
    again = load_weights(root=tmp_path).state_dict
    assert all(torch.equal(again[name], value) for name, value in expected.items())


def test_fetch_with_a_copy_of_the_wheel_reports_its_source(
    musicnn_cache: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    copy = musicnn_cache / "wheels" / WHEEL_NAME
    result = CliRunner().invoke(app, ["teacher", "fetch", "--wheel", str(copy)])
    assert result.exit_code == 0, result.output
    assert WHEEL_SHA256 in result.output and "MSD_musicnn: 50 tags" in result.output
    assert (tmp_path / FOLDER_NAME / "manifest.json").is_file()
