"""The catalogue snapshot: a valid dataset folder, rewritten in place so the mel cache holds."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from catalogue import open_catalogue
from catalogue.repository import ListenIn
from corpus.dataset import find_audio, load_dataset
from corpus.validate import validate_dataset
from pipeline.snapshot import snapshot_catalogue


@pytest.fixture()
def catalogue(tmp_path: Path):
    with open_catalogue(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "store") as opened:
        yield opened


def _seed(catalogue, audio_assets: Path, tiny_world: Path) -> None:
    world_audio = find_audio(tiny_world)
    songs = pd.DataFrame(
        {"song_id": ["w1", "w2", "w/3"], "title": ['A "quoted", title', "B", "C"], "artist": "x"}
    )
    catalogue.import_songs(songs)
    mp3 = next(audio_assets.glob("*.mp3"))
    catalogue.add_track("cold-1", "New", "Someone", audio=mp3, audio_ext="mp3")
    catalogue.add_listens(
        [
            ListenIn('user "1"', "w1", 3),
            ListenIn("user-2", "w1", 1),
            ListenIn("user-2", "cold-1", 2),
            ListenIn("user-2", "cold-1", 5),  # summed with the row before
        ]
    )
    return world_audio


def test_snapshot_is_a_valid_dataset_with_every_track_and_summed_listens(
    catalogue, audio_assets: Path, tiny_world: Path, tmp_path: Path
) -> None:
    world_audio = _seed(catalogue, audio_assets, tiny_world)
    fallback = {"w1": next(iter(world_audio.values())), "w/3": next(iter(world_audio.values()))}
    snapshot = snapshot_catalogue(catalogue, tmp_path / "snap", fallback_audio=fallback)

    report = validate_dataset(snapshot.root, check_audio=False)
    assert report.ok, report.problems
    dataset = load_dataset(snapshot.root)
    assert set(dataset.songs["song_id"]) == {"w1", "w2", "w/3", "cold-1"}
    assert dataset.songs.set_index("song_id").loc["w1", "title"] == 'A "quoted", title'
    plays = {(row.user_id, row.song_id): row.play_count for row in dataset.listens.itertuples()}
    assert plays == {('user "1"', "w1"): 3, ("user-2", "w1"): 1, ("user-2", "cold-1"): 7}
    # cold-1 from the audio store, w1 from the fallback; w2 has none; "w/3" cannot be a name
    assert set(dataset.audio_paths) == {"w1", "cold-1"}
    assert dataset.audio_paths["w1"].resolve() == fallback["w1"].resolve()
    assert snapshot.source == "database"
    assert snapshot.counts["listens"] == 3 and snapshot.counts["tracks"] == 4
    assert snapshot.counts["audio_files"] == 2
    # It holds the listens up to its watermark; later ones wait for the next snapshot.
    assert snapshot.listens_through == catalogue.last_listen_id() == 4
    assert snapshot.to_json()["listens_through"] == 4
    catalogue.add_listens([ListenIn("user-3", "w2", 9)])
    assert catalogue.listens_since(["user-3"], snapshot.listens_through) == [("user-3", "w2", 9)]


def test_snapshot_rewrites_in_place_and_keeps_unchanged_links(
    catalogue, audio_assets: Path, tiny_world: Path, tmp_path: Path
) -> None:
    _seed(catalogue, audio_assets, tiny_world)
    folder = tmp_path / "snap"
    snapshot_catalogue(catalogue, folder)
    kept = folder / "audio" / "cold-1.mp3"
    before = os.lstat(kept).st_ino

    flac = next(audio_assets.glob("*.flac"))
    catalogue.add_track("cold-2", "Newer", "", audio=flac, audio_ext="flac")
    catalogue.delete_track("w1")
    second = snapshot_catalogue(catalogue, folder)

    assert os.lstat(kept).st_ino == before  # untouched: its mel stays valid in the cache
    assert sorted(path.name for path in (folder / "audio").iterdir()) == [
        "cold-1.mp3",
        "cold-2.flac",
    ]
    dataset = load_dataset(folder)
    assert "w1" not in set(dataset.songs["song_id"])
    assert "w1" not in set(dataset.listens["song_id"].astype(str))  # its listens went with it
    assert second.counts["audio_links_changed"] == 1


def test_import_listens_needs_known_songs_and_adds_nothing_otherwise(catalogue) -> None:
    from catalogue.errors import InvalidTrack

    catalogue.import_songs(pd.DataFrame({"song_id": ["s1"], "title": ["t"], "artist": [""]}))
    listens = pd.DataFrame(
        {"user_id": ["u1", "u2"], "song_id": ["s1", "missing"], "play_count": [1, 2]}
    )
    with pytest.raises(InvalidTrack, match="missing"):
        catalogue.import_listens(listens)
    assert catalogue.count_listens() == 0
    assert catalogue.import_listens(listens.iloc[:1]) == 1
    assert catalogue.export_listens()["play_count"].tolist() == [1]


def test_import_command_fills_the_catalogue_once(tiny_world: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    database = tmp_path / "catalogue.db"
    runner = CliRunner()
    command = ["import", "--dataset", str(tiny_world), "--database", str(database)]
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    # Not a terminal: a line as each step starts and ends, with what it did.
    lines = first.output.splitlines()
    assert lines[0] == "songs (120): started" and lines[2] == "listens: started"
    assert lines[1].startswith("songs (120): done in") and lines[1].endswith("(120 added)")
    assert lines[3].startswith("listens: done in") and lines[3].endswith(" added)")
    world = load_dataset(tiny_world)
    with open_catalogue(f"sqlite:///{database}", tmp_path / "catalogue.db.audio") as catalogue:
        assert catalogue.count_tracks("warm") == len(world.songs)
        assert catalogue.count_listens() == len(world.listens)
        records = catalogue.list_tracks()
        assert all(record.audio_path for record in records)  # recordings copied into the store
    again = runner.invoke(app, command)
    assert again.exit_code == 1 and "already holds" in again.output


def test_a_track_whose_stored_audio_is_gone_is_named_not_linked(catalogue, tmp_path: Path) -> None:
    from tests.hostile_audio import RATE, tone, wav_bytes

    kept = catalogue.add_track("kept", "Kept", audio=wav_bytes(tone(3.2), RATE), audio_ext="wav")
    lost = catalogue.add_track(
        "lost", "Lost", audio=wav_bytes(tone(3.2, hz=900), RATE), audio_ext="wav"
    )
    catalogue.audio_store.path(lost.audio_path).unlink()  # behind the catalogue's back
    snapshot = snapshot_catalogue(catalogue, tmp_path / "snap")
    assert snapshot.missing_audio == ("lost",)
    assert snapshot.counts["tracks_missing_audio"] == 1
    assert set(find_audio(snapshot.root)) == {kept.id}
    assert not (snapshot.root / "audio" / "lost.wav").is_symlink()
