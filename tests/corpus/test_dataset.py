"""The dataset contract's loader: a round trip, the errors it raises, the fingerprint."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corpus.dataset import (
    AUDIO_DIR,
    LISTENS_FILE,
    SONGS_FILE,
    DatasetError,
    dataset_fingerprint,
    find_audio,
    iter_listens,
    load_dataset,
    read_listens,
    read_songs,
)

SONGS = pd.DataFrame(
    {
        "song_id": ["SOAAA", "SOBBB", "SOCCC", "SODDD"],
        "title": ["Alpha", "Beta, with a comma", "Gamma", ""],
        "artist": ["A", "B", "C", "D"],
    }
)
LISTENS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u3", "u3", "u3"],
        "song_id": ["SOAAA", "SOBBB", "SOAAA", "SOCCC", "SOAAA", "SOBBB"],
        "play_count": [3, 1, 7, 1, 2, 2_000_000_000],
    }
)


def write_tone(path: Path, seconds: float = 0.5, rate: int = 8000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.sin(2 * np.pi * 220.0 * t) * 8000).astype("<i2").tobytes())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    (folder / AUDIO_DIR).mkdir(parents=True)
    SONGS.to_csv(folder / SONGS_FILE, index=False)
    LISTENS.to_csv(folder / LISTENS_FILE, sep="\t", header=False, index=False)
    for song_id in SONGS["song_id"]:
        write_tone(folder / AUDIO_DIR / f"{song_id}.wav")
    return folder


def test_round_trip(root: Path) -> None:
    dataset = load_dataset(root)
    listens = dataset.listens
    assert list(listens.columns) == ["user_id", "song_id", "play_count"]
    assert isinstance(listens["user_id"].dtype, pd.CategoricalDtype)
    assert isinstance(listens["song_id"].dtype, pd.CategoricalDtype)
    assert listens["play_count"].dtype == np.int32
    for column in ("user_id", "song_id", "play_count"):
        assert listens[column].astype(object).tolist() == LISTENS[column].tolist()
    assert set(listens["song_id"].cat.categories) == {"SOAAA", "SOBBB", "SOCCC"}  # only used
    assert dataset.n_users == 3
    assert dataset.song_ids == SONGS["song_id"].tolist()
    assert dataset.songs.astype(object).equals(SONGS.astype(object))  # '' stays '', not NaN
    assert dataset.audio_paths == {
        song_id: root / AUDIO_DIR / f"{song_id}.wav" for song_id in SONGS["song_id"]
    }


def test_find_audio_keeps_the_first_file_of_a_song_and_ignores_the_rest(root: Path) -> None:
    write_tone(root / AUDIO_DIR / "SOAAA.flac.wav")
    (root / AUDIO_DIR / "SOBBB.mp3").write_bytes(b"")  # sorts before SOBBB.wav
    (root / AUDIO_DIR / "notes.txt").write_text("x")
    paths = find_audio(root)
    assert paths["SOBBB"].name == "SOBBB.mp3"
    assert "notes" not in paths and paths["SOAAA.flac"].name == "SOAAA.flac.wav"
    assert find_audio(root / "nowhere") == {}


@pytest.mark.parametrize(
    ("listens_tsv", "complaint"),
    [
        ("u1\tSOAAA\n", "Expected 3 columns"),
        ("u1\tSOAAA\t1\textra\n", "Expected 3 columns"),
        ("u1\tSOAAA\tmany\n", "play count 'many' is not an integer"),
        ("u1\tSOAAA\t0x4\n", "play count '0x4' is not an integer"),
        ("u1\tSOAAA\t0\n", "play count '0' is below 1"),
        ("u1\tSOAAA\t-2\n", "play count '-2' is below 1"),
        ("u1\tSOAAA\t3000000000\n", "int32"),
        ("u1\tSOAAA\t\n", "empty play counts"),
        ("u1\tSOAAA\t1\n\nu2\tSOAAA\t1\n", "empty play counts (or empty lines)"),
        ("\tSOAAA\t1\n", "empty user_id"),
        ("u1\t\t1\n", "empty song_id"),
        ("", "Empty CSV file"),
        ("u1\tSOZZZ\t1\n", "not in songs.csv"),
    ],
)
def test_bad_listens_raise(root: Path, listens_tsv: str, complaint: str) -> None:
    (root / LISTENS_FILE).write_text(listens_tsv)
    with pytest.raises(DatasetError, match="listens.tsv") as raised:
        load_dataset(root)
    assert complaint in str(raised.value)


@pytest.mark.parametrize("block_bytes", [24, 45, 1 << 20])
@pytest.mark.parametrize("last_newline", [True, False])
def test_streamed_blocks_hold_every_row_once(
    root: Path, block_bytes: int, last_newline: bool
) -> None:
    text = (root / LISTENS_FILE).read_text()
    (root / LISTENS_FILE).write_text(text if last_newline else text.rstrip("\n"))
    frames = list(iter_listens(root / LISTENS_FILE, block_bytes=block_bytes))
    # lines of 11-20 bytes: small blocks cut the file in several frames; 1 MiB holds it in
    # one, or two when the last line has no end (known a line's end only once it is read)
    assert len(frames) > 1 if block_bytes < 100 else len(frames) == 2 - last_newline
    rows = [
        row
        for frame in frames
        for row in zip(
            frame["user_id"].astype(str),
            frame["song_id"].astype(str),
            frame["play_count"],
            strict=True,
        )
    ]
    assert rows == list(LISTENS.itertuples(index=False, name=None))


def test_streamed_listens_refuse_a_line_longer_than_a_block_and_an_empty_file(
    root: Path,
) -> None:
    (root / LISTENS_FILE).write_text("u1\tSOAAA\t1\n" + "u" * 200 + "\tSOAAA\t1\n")
    with pytest.raises(DatasetError, match="no line end in 117 bytes from byte 11"):
        list(iter_listens(root / LISTENS_FILE, block_bytes=64))
    (root / LISTENS_FILE).write_text("u1\tSOAAA\t1\nu2\tSOAAA\n")
    with pytest.raises(DatasetError, match=r"after line 1\).*Expected 3 columns"):
        list(iter_listens(root / LISTENS_FILE, block_bytes=12))
    (root / LISTENS_FILE).write_bytes(b"")
    with pytest.raises(DatasetError, match="no listens"):
        list(iter_listens(root / LISTENS_FILE))


@pytest.mark.parametrize(
    ("songs_csv", "complaint"),
    [
        ("id,title,artist\nSOAAA,a,b\n", "header must be song_id,title,artist"),
        ("song_id,title,artist\nSOAAA,a\n", "unreadable CSV"),
        ("song_id,title,artist\nSOAAA,a,b\nSOAAA,c,d\n", "'SOAAA' appears more than once"),
        ("song_id,title,artist\nSOAAA,a,b\n\nSOBBB,c,d\n", "empty song_id"),
        ("song_id,title,artist\n,a,b\n", "empty song_id"),
        ("", "unreadable CSV"),
    ],
)
def test_bad_songs_raise(root: Path, songs_csv: str, complaint: str) -> None:
    (root / SONGS_FILE).write_text(songs_csv)
    with pytest.raises(DatasetError, match="songs.csv") as raised:
        read_songs(root / SONGS_FILE)
    assert complaint in str(raised.value)


def test_missing_parts_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="missing"):
        read_listens(tmp_path / LISTENS_FILE)
    with pytest.raises(DatasetError, match="missing"):
        read_songs(tmp_path / SONGS_FILE)


def test_fingerprint_follows_listens_catalogue_and_recordings(root: Path) -> None:
    first = dataset_fingerprint(root)
    assert dataset_fingerprint(root) == first

    listens = (root / LISTENS_FILE).read_text()
    (root / LISTENS_FILE).write_text(listens.replace("u2\tSOAAA\t7", "u2\tSOAAA\t8"))
    changed_count = dataset_fingerprint(root)
    assert changed_count != first
    (root / LISTENS_FILE).write_text(listens)
    assert dataset_fingerprint(root) == first

    (root / SONGS_FILE).write_text((root / SONGS_FILE).read_text() + "SOEEE,Epsilon,E\n")
    with_song = dataset_fingerprint(root)
    assert with_song != first
    write_tone(root / AUDIO_DIR / "SOEEE.wav")
    assert dataset_fingerprint(root) not in (first, with_song)
