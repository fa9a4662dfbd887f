"""The factorization step of a run, end to end: RUN/split and RUN/factorization as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from artifacts.manifest import ArtifactError, read_manifest
from corpus.dataset import dataset_fingerprint, load_dataset
from corpus.split import load_split
from factorization.matrices import listening_users
from factorization.run import factorize_run, load_factorization
from factorization.wmf import WMFParams

FILES = [
    "user_factors.npy",
    "user_ids.json",
    "song_factors.npy",
    "song_ids.json",
    "valid_song_factors.npy",
    "valid_song_ids.json",
    "test_song_factors.npy",
    "test_song_ids.json",
]


@pytest.fixture(scope="module")
def run_dir(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    factorize_run(tiny_dataset, run, WMFParams(factors=8, iterations=6), progress=False)
    return run


def test_run_folder_follows_the_architecture(tiny_dataset: Path, run_dir: Path) -> None:
    split_manifest = read_manifest(run_dir / "split", kind="split")
    manifest = read_manifest(run_dir / "factorization", kind="factorization")
    assert sorted(manifest["files"]) == sorted(FILES)
    assert manifest["parents"] == {"split": split_manifest["digest"]}
    assert manifest["dataset_fingerprint"] == dataset_fingerprint(tiny_dataset)
    assert manifest["parameters"]["regularization_requested"] == "auto"
    assert manifest["parameters"]["regularization_from"] == "searched"
    search = manifest["regularization_search"]
    assert manifest["parameters"]["regularization"] == search["chosen"]
    assert search["grid"] == [1.0, 10.0, 100.0, 1000.0] and len(search["scores"]) == 4
    assert set(json.loads((run_dir / "split" / "split.json").read_text())) >= {
        "method",
        "seed",
        "train",
        "valid",
        "test",
    }


def test_factors_follow_the_split(tiny_dataset: Path, run_dir: Path) -> None:
    split = load_split(run_dir)
    factorization = load_factorization(run_dir)
    assert factorization.song_ids == split.train
    assert factorization.valid_song_ids == split.valid
    assert factorization.test_song_ids == split.test
    assert factorization.n_factors == 8
    assert factorization.song_factors.shape == (len(split.train), 8)
    assert factorization.test_song_factors.shape == (len(split.test), 8)
    assert factorization.user_factors.dtype == np.float32
    assert factorization.digest == factorization.manifest["digest"]
    # users are exactly those with a training listen; the others are left out
    listens = load_dataset(tiny_dataset).listens
    assert factorization.user_ids == listening_users(listens, split.train)
    counts = factorization.manifest["counts"]
    assert counts["users"] + counts["users_left_out"] == listens["user_id"].nunique()
    assert np.isfinite(factorization.test_song_factors).all()
    assert np.abs(factorization.test_song_factors).sum(axis=1).min() > 0


def test_upper_bound_ranks_held_out_listeners_high(tiny_dataset: Path, run_dir: Path) -> None:
    """Folded-in test songs score their own (held-out) listeners above the other users."""
    factorization = load_factorization(run_dir)
    listens = load_dataset(tiny_dataset).listens
    scores = factorization.user_factors @ factorization.test_song_factors.T
    listened = (
        pd.crosstab(listens["user_id"], listens["song_id"])
        .reindex(index=factorization.user_ids, columns=factorization.test_song_ids, fill_value=0)
        .to_numpy()
        > 0
    )
    assert scores[listened].mean() > scores[~listened].mean() + 3 * scores.std() / 10


def test_same_inputs_same_factors(tiny_dataset: Path, run_dir: Path, tmp_path: Path) -> None:
    factorize_run(tiny_dataset, tmp_path, WMFParams(factors=8, iterations=6), progress=False)
    first, again = load_factorization(run_dir), load_factorization(tmp_path)
    np.testing.assert_array_equal(first.song_factors, again.song_factors)
    np.testing.assert_array_equal(first.test_song_factors, again.test_song_factors)
    assert first.manifest["files"] == again.manifest["files"]


def test_edited_factors_are_refused(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    factors = np.load(copy / "factorization" / "song_factors.npy")
    factors[0, 0] += 1.0
    np.save(copy / "factorization" / "song_factors.npy", factors)
    with pytest.raises(ArtifactError, match="song_factors.npy does not match"):
        load_factorization(copy)
    (copy / "factorization" / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="unfinished"):
        load_factorization(copy)


def invoke(args: list[str]) -> Result:
    """`coldstart factorize ARGS`."""
    from cli.main import app

    return CliRunner().invoke(app, ["factorize", *args])


def test_a_reused_lambda_is_recorded_with_its_version(tiny_dataset: Path, tmp_path: Path) -> None:
    params = WMFParams(factors=4, regularization=30.0, iterations=2)
    manifest = factorize_run(
        tiny_dataset, tmp_path / "run", params, progress=False, regularization_reused_from="v1"
    )
    assert manifest["regularization_search"] is None
    assert manifest["parameters"]["regularization"] == 30.0
    assert manifest["parameters"]["regularization_from"] == "reused from version v1"
    with pytest.raises(ValueError, match="reused regularization is a number"):
        factorize_run(
            tiny_dataset,
            tmp_path / "other",
            WMFParams(factors=4, iterations=2),
            progress=False,
            regularization_reused_from="v1",
        )
    assert not (tmp_path / "other").exists()  # refused before anything is written


def test_given_test_songs_and_cli(tiny_dataset: Path, tmp_path: Path) -> None:
    test_songs = tmp_path / "test_songs.txt"
    test_songs.write_text("S0002\nS0010\nS0042\n")
    run = tmp_path / "run"
    result = invoke(
        [
            str(tiny_dataset),
            "--run",
            str(run),
            "--test-songs",
            str(test_songs),
            "--factors",
            "4",
            "--regularization",
            "100",
            "--iterations",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "regularization 100 (given)" in result.output
    factorization = load_factorization(run)
    assert factorization.test_song_ids == ["S0002", "S0010", "S0042"]
    assert factorization.manifest["regularization_search"] is None
    assert factorization.manifest["parameters"]["regularization_from"] == "given"
    assert load_split(run).method == "given-test-songs"

    test_songs.write_text("S0002\nNOPE\n")
    result = invoke([str(tiny_dataset), "--run", str(run), "--test-songs", str(test_songs)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # rich wraps long lines at the terminal's width
    assert "song ids not in the catalogue" in said and "NOPE" in said
    bad = invoke([str(tiny_dataset), "--run", str(run), "--regularization", "lots"])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_tiny_world_end_to_end(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    world = request.getfixturevalue("tiny_world")
    manifest = factorize_run(world, tmp_path, WMFParams(factors=16), progress=False)
    factorization = load_factorization(tmp_path)
    assert factorization.manifest["digest"] == manifest["digest"]
    assert len(factorization.test_song_ids) == manifest["counts"]["test_songs"] > 0
    assert np.isfinite(factorization.user_factors).all()
