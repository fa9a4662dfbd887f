"""The audio store: content-addressed, idempotent, atomic, refuses what it cannot keep."""

from __future__ import annotations

import hashlib
import io

import pytest

from catalogue.audio_store import INCOMING, AudioStore
from catalogue.errors import InvalidAudio


def test_files_are_named_by_their_sha256(tmp_path):
    store = AudioStore(tmp_path / "audio")
    stored = store.put(b"some audio bytes", "WAV")
    digest = hashlib.sha256(b"some audio bytes").hexdigest()
    assert stored.sha256 == digest and stored.size == len(b"some audio bytes")
    assert stored.relative_path == f"{digest[:2]}/{digest}.wav"
    assert store.path(stored.relative_path).read_bytes() == b"some audio bytes"


def test_storing_twice_is_a_no_op_and_inputs_agree(tmp_path):
    store = AudioStore(tmp_path)
    source = tmp_path / "upload.flac"
    source.write_bytes(b"fLaC" + bytes(range(256)) * 10_000)  # several read chunks
    from_path = store.put(source, "flac")
    modified = store.path(from_path.relative_path).stat().st_mtime_ns
    assert store.put(source.read_bytes(), ".flac") == from_path
    assert store.put(io.BytesIO(source.read_bytes()), "flac") == from_path
    assert store.path(from_path.relative_path).stat().st_mtime_ns == modified
    assert store.put(b"other", "flac").sha256 != from_path.sha256
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != source]
    assert len(files) == 2
    assert not any((tmp_path / INCOMING).iterdir())  # no temporary files left behind


def test_real_recordings_round_trip(tmp_path, audio_assets):
    store = AudioStore(tmp_path)
    for recording in sorted(audio_assets.glob("*.ogg")):
        stored = store.put(recording, recording.suffix)
        assert store.path(stored.relative_path).read_bytes() == recording.read_bytes()


@pytest.mark.parametrize(
    ("audio", "ext", "message"),
    [(b"", "wav", "empty audio"), (b"x", "exe", "not one of"), (b"x", "", "not one of")],
)
def test_unstorable_audio_is_refused(tmp_path, audio, ext, message):
    store = AudioStore(tmp_path)
    with pytest.raises(InvalidAudio, match=message):
        store.put(audio, ext)
    assert not any((tmp_path / INCOMING).iterdir())


@pytest.mark.parametrize("path", ["../../etc/passwd", "ab/cd.wav", "/abs/path.wav", ""])
def test_paths_outside_the_store_are_refused(tmp_path, path):
    with pytest.raises(InvalidAudio, match="not an audio store path"):
        AudioStore(tmp_path).path(path)
