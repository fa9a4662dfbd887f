"""The report of a run: files, schema, recomputability, and the ordering of the rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from artifacts.files import write_json_atomic
from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from corpus.dataset import dataset_fingerprint
from evaluation.report import evaluate_run, load_predictions
from evaluation.users import USER_SAMPLE_SEED
from ranking.metrics import ranking_metrics
from training.run_data import bounded_draw

N_USERS, N_TRAIN, N_TEST, N_FACTORS = 240, 90, 60, 8
GENRES = ("rock", "jazz", "folk")


def write_dataset(root: Path, user_factors: np.ndarray, song_factors: np.ndarray) -> None:
    """Listens drawn from the factors: each user plays the songs it scores highest (plus
    noise); every tenth user never plays a test song. Also songs.csv and a truth.json."""
    rng = np.random.default_rng(1)
    n_songs = song_factors.shape[0]
    scores = user_factors @ song_factors.T + rng.normal(0, 0.5, (N_USERS, n_songs))
    scores[::10, N_TRAIN:] = -np.inf
    listened = scores >= np.sort(scores, axis=1)[:, [-12]]
    root.mkdir(parents=True)
    users, songs = np.nonzero(listened)
    plays = rng.integers(1, 20, users.size)
    (root / "listens.tsv").write_text(
        "".join(f"u{u:03d}\ts{s:03d}\t{p}\n" for u, s, p in zip(users, songs, plays, strict=True))
    )
    (root / "songs.csv").write_text(
        "song_id,title,artist\n"
        + "".join(f"s{s:03d},Song {s},Artist {s % 13}\n" for s in range(n_songs))
    )
    truth = {"songs": {f"s{s:03d}": {"genre": GENRES[s % 3]} for s in range(n_songs)}}
    (root / "truth.json").write_text(json.dumps(truth))


def write_factorization(
    run: Path, dataset: Path, user_factors: np.ndarray, songs: np.ndarray
) -> str:
    """A `RUN/factorization/` in the ARCHITECTURE.md layout; the test songs' true factors
    stand in for the folded-in upper bound. Returns its digest."""
    folder = run / "factorization"
    folder.mkdir(parents=True)
    song_ids = [f"s{s:03d}" for s in range(songs.shape[0])]
    parts = {
        "user": (user_factors, [f"u{u:03d}" for u in range(N_USERS)]),
        "song": (songs[:N_TRAIN], song_ids[:N_TRAIN]),
        "valid_song": (songs[:0], []),
        "test_song": (songs[N_TRAIN:], song_ids[N_TRAIN:]),
    }
    files = []
    for subject, (factors, ids) in parts.items():
        np.save(folder / f"{subject}_factors.npy", factors.astype(np.float32))
        write_json_atomic(folder / f"{subject}_ids.json", ids)
        files += [f"{subject}_factors.npy", f"{subject}_ids.json"]
    manifest = write_manifest(
        folder,
        kind="factorization",
        files=files,
        parameters={"factors": N_FACTORS, "regularization": 1.0},
        dataset_fingerprint=dataset_fingerprint(dataset),
    )
    return str(manifest["digest"])


def write_model(run: Path, name: str, test_song_factors: np.ndarray, parent: str) -> None:
    folder = run / "models" / name
    folder.mkdir(parents=True)
    np.save(folder / "test_song_factors.npy", test_song_factors.astype(np.float32))
    write_manifest(
        folder, kind="model", files=["test_song_factors.npy"], parents={"factorization": parent}
    )


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run with an upper bound, a `noisy` model (upper bound + noise) and an unfinished one."""
    base = tmp_path_factory.mktemp("fake_run")
    rng = np.random.default_rng(0)
    user_factors = rng.standard_normal((N_USERS, N_FACTORS))
    songs = rng.standard_normal((N_TRAIN + N_TEST, N_FACTORS))
    dataset, run = base / "dataset", base / "run"
    write_dataset(dataset, user_factors, songs)
    digest = write_factorization(run, dataset, user_factors, songs)
    noisy = songs[N_TRAIN:] + rng.normal(0, 1.0, (N_TEST, N_FACTORS))
    write_model(run, "noisy", noisy, digest)
    (run / "models" / "unfinished").mkdir()
    np.save(run / "models" / "unfinished" / "test_song_factors.npy", noisy.astype(np.float32))
    return dataset, run


@pytest.fixture(scope="module")
def evaluated(fake_run: tuple[Path, Path]) -> tuple[Path, dict]:
    dataset, run = fake_run
    report = evaluate_run(run, k=500, seed=0, progress=False, dataset_root=dataset)
    return run, report


def test_report_json_schema(evaluated: tuple[Path, dict]) -> None:
    run, returned = evaluated
    report = json.loads((run / "report.json").read_text())
    assert report == json.loads(json.dumps(returned))
    assert {"k", "n_users", "n_test_songs", "n_train_songs", "models"} <= report.keys()
    assert report["k"] == 500
    assert report["n_users"] == N_USERS - N_USERS // 10  # every tenth user has no test listen
    assert report["n_test_songs"] == N_TEST
    assert report["n_train_songs"] == N_TRAIN
    assert set(report["models"]) == {"random", "upper_bound", "noisy"}
    top_k = {f"{m}@{c}" for m in ("recall", "precision", "ndcg") for c in (10, 50, 500)}
    for row in report["models"].values():
        assert set(row) == {"map", "auc"} | top_k
        assert all(0.0 <= value <= 1.0 for value in row.values())
    assert set(report["expected_random"]) == {"map", "auc"} | top_k
    assert report["skipped_models"] == {"unfinished": "no manifest.json (unfinished)"}


def test_predictions_recompute_the_report(evaluated: tuple[Path, dict]) -> None:
    run, report = evaluated
    with np.load(run / "predictions.npz", allow_pickle=False) as archive:
        assert archive["user_ids"].dtype.kind == "U"
        assert archive["test_song_ids"].dtype.kind == "U"
        assert archive["user_factors"].shape == (report["n_users"], N_FACTORS)
        assert archive["user_factors"].dtype == np.float32
    predictions = load_predictions(run)
    assert set(predictions["models"]) == set(report["models"])
    for name, song_vectors in predictions["models"].items():
        assert song_vectors.shape == (N_TEST, N_FACTORS) and song_vectors.dtype == np.float32
        again = ranking_metrics(
            predictions["user_factors"], song_vectors, predictions["relevance"], k=report["k"]
        )
        assert again.n_users == report["n_users"]
        assert again.map == pytest.approx(report["models"][name]["map"], rel=1e-9)
        assert again.auc == pytest.approx(report["models"][name]["auc"], rel=1e-9)
        for metric, value in again.top_k().items():
            assert value == pytest.approx(report["models"][name][metric], rel=1e-9)


def test_models_order_between_random_and_upper_bound(evaluated: tuple[Path, dict]) -> None:
    _, report = evaluated
    models = report["models"]
    for metric in ("map", "auc", "recall@50", "ndcg@10"):
        assert models["random"][metric] < models["noisy"][metric] < models["upper_bound"][metric]
    gap = report["gap_closed"]["noisy"]["map"]
    assert 0.0 < gap < 1.0
    assert report["gap_closed"]["upper_bound"]["map"] == pytest.approx(1.0)


def test_random_row_is_near_its_expectation(evaluated: tuple[Path, dict]) -> None:
    _, report = evaluated
    expected = report["expected_random"]
    assert expected["auc"] == 0.5
    assert report["models"]["random"]["map"] == pytest.approx(expected["map"], rel=0.5)
    assert report["models"]["random"]["auc"] == pytest.approx(0.5, abs=0.1)
    for metric in ("recall@50", "precision@50", "ndcg@50"):
        assert report["models"]["random"][metric] == pytest.approx(expected[metric], rel=0.5)


def test_markdown_plots_and_manifest(evaluated: tuple[Path, dict]) -> None:
    run, _ = evaluated
    markdown = (run / "report.md").read_text()
    assert "](plots/metrics.png)" in markdown and "](plots/song_map.png)" in markdown
    assert "coloured by genre" in markdown  # truth.json maps every song
    table = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].strip() for line in table[:3]] == ["upper_bound", "noisy", "random"]
    top_k = markdown[markdown.index("| model | recall@10") :].splitlines()
    assert top_k[0].split(" | ")[-1] == "NDCG@500 |"
    assert [line.split("|")[1].strip() for line in top_k[2:6]] == [
        "upper_bound",
        "noisy",
        "random",
        "*random, expected*",
    ]
    for plot in ("plots/metrics.png", "plots/song_map.png"):
        assert (run / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_manifest(run, kind="report")
    assert set(manifest["files"]) == {
        "report.json",
        "predictions.npz",
        "report.md",
        "plots/metrics.png",
        "plots/song_map.png",
    }


def test_refuses_an_unknown_or_different_dataset(
    fake_run: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, run = fake_run
    with pytest.raises(ArtifactError, match="does not record its dataset"):
        evaluate_run(run, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("songs.csv", "truth.json"):
        (other / name).write_bytes((dataset / name).read_bytes())
    (other / "listens.tsv").write_text("u000\ts000\t1\n")
    with pytest.raises(ArtifactError, match="fingerprint"):
        evaluate_run(run, progress=False, dataset_root=other)


def test_refuses_a_model_of_another_factorization(
    fake_run: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, run = fake_run
    stale = tmp_path / "run"
    for path in (run / "factorization").iterdir():
        (stale / "factorization").mkdir(parents=True, exist_ok=True)
        (stale / "factorization" / path.name).write_bytes(path.read_bytes())
    write_model(stale, "old", np.zeros((N_TEST, N_FACTORS)), parent="0" * 64)
    with pytest.raises(ArtifactError, match="retrain it"):
        evaluate_run(stale, progress=False, dataset_root=dataset)


def test_song_map_falls_back_to_artists_without_truth(
    fake_run: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, run = fake_run
    plain = tmp_path / "dataset"  # same listens and songs (same fingerprint), no truth.json
    plain.mkdir()
    for name in ("listens.tsv", "songs.csv"):
        (plain / name).write_bytes((dataset / name).read_bytes())
    copy = tmp_path / "run"
    for folder in ("factorization", "models/noisy"):
        (copy / folder).mkdir(parents=True)
        for path in (run / folder).iterdir():
            (copy / folder / path.name).write_bytes(path.read_bytes())
    evaluate_run(copy, progress=False, dataset_root=plain)
    assert "coloured by artist" in (copy / "report.md").read_text()


def test_report_per_kind_of_test_song(fake_run: tuple[Path, Path], tmp_path: Path) -> None:
    """With kinds in the split, every model is also scored on each kind's songs alone, with
    that kind's expectation and upper bound, and the hybrid's effect over the cnn is given
    (nothing on cold artists, where it is the cnn)."""
    from corpus.split import SongSplit, write_split

    dataset, run = fake_run
    copy = tmp_path / "run"
    for folder in ("factorization", "models/noisy"):
        (copy / folder).mkdir(parents=True)
        for path in (run / folder).iterdir():
            (copy / folder / path.name).write_bytes(path.read_bytes())
    digest = read_manifest(copy / "factorization")["digest"]
    test_ids = [f"s{s:03d}" for s in range(N_TRAIN, N_TRAIN + N_TEST)]
    kinds = ["cold_track" if i % 3 else "cold_artist" for i in range(N_TEST)]
    train_ids = [f"s{s:03d}" for s in range(N_TRAIN)]
    write_split(SongSplit(train=train_ids, valid=[], test=test_ids, test_kinds=kinds), copy)
    truth = np.load(copy / "factorization" / "test_song_factors.npy")
    cnn = truth + np.random.default_rng(5).normal(0, 1.5, truth.shape)
    artist_rows = np.array(kinds) == "cold_artist"
    hybrid = np.where(artist_rows[:, None], cnn, truth + 0.1)  # better on cold tracks only
    write_model(copy, "cnn", cnn, digest)
    write_model(copy, "hybrid", hybrid, digest)

    report = evaluate_run(copy, progress=False, dataset_root=dataset)
    assert set(report["kinds"]) == {"cold_track", "cold_artist"}
    predictions = load_predictions(copy)
    for kind, table in report["kinds"].items():
        columns = np.flatnonzero(np.array(kinds) == kind)
        assert table["n_test_songs"] == columns.size
        relevance = predictions["relevance"][:, columns]
        heard = np.flatnonzero(np.diff(sp.csr_array(relevance).indptr) > 0)
        assert table["n_users"] == heard.size
        again = ranking_metrics(
            predictions["user_factors"][heard], truth[columns], relevance[heard], k=500
        )
        assert table["models"]["upper_bound"]["map"] == pytest.approx(again.map, rel=1e-12)
        for metric, value in again.top_k().items():
            assert table["models"]["upper_bound"][metric] == pytest.approx(value, rel=1e-12)
        assert table["expected_random"]["map"] != report["expected_random"]["map"]
    effect = report["hybrid_effect"]
    assert effect["cold_artist"] == {"map": 0.0, "auc": 0.0}
    assert effect["cold_track"]["map"] > 0 and effect["cold_track"]["auc"] > 0
    markdown = (copy / "report.md").read_text()
    assert "## Cold tracks" in markdown and "## Cold artists" in markdown
    assert "cold_artist: mAP@500 +0.00000, AUC +0.0000" in markdown


def test_at_most_max_users_are_scored_and_the_report_says_so(
    fake_run: tuple[Path, Path], evaluated: tuple[Path, dict], tmp_path: Path
) -> None:
    dataset, original = fake_run
    every_user = load_predictions(evaluated[0])["user_ids"]
    run = tmp_path / "run"
    shutil.copytree(original, run, ignore=shutil.ignore_patterns("report*", "predictions*"))
    report = evaluate_run(run, k=500, seed=0, progress=False, dataset_root=dataset, max_users=40)
    assert report["n_users"] == 40
    settings = report["settings"]
    assert settings["max_users"] == 40
    assert settings["n_users_with_test_listens"] == len(every_user) == N_USERS - N_USERS // 10
    assert read_manifest(run)["parameters"]["max_users"] == 40
    assert f"40 of the {len(every_user)} with a test listen" in (run / "report.md").read_text()
    predictions = load_predictions(run)
    # The draw is `users_to_evaluate`'s over the users with a test listen, in their order.
    drawn = bounded_draw(len(every_user), 40, USER_SAMPLE_SEED)
    assert predictions["user_ids"] == [every_user[i] for i in drawn]
    for name, song_vectors in predictions["models"].items():
        again = ranking_metrics(
            predictions["user_factors"], song_vectors, predictions["relevance"], k=500
        )
        assert again.n_users == 40
        assert again.map == pytest.approx(report["models"][name]["map"], rel=1e-9)
