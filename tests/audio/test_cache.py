"""The mel cache: what it stores, skipping and resuming, refusing another front end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import audio.cache
from audio.cache import MelCache, default_cache_dir, featurize_dataset
from audio.config import FRONT_END, FrontEndConfig, FrontEndMismatchError
from audio.frontend import log_mel

CACHED = ["game", "speech", "trumpet"]
FAILED = {"hush": "silent", "lyrics": "undecodable", "robin": "too_short"}


@pytest.fixture
def dataset(tmp_path: Path, audio_assets: Path, wav) -> Path:
    """A dataset's audio/ folder: three songs that cache and three that cannot."""
    audio_dir = tmp_path / "world" / "audio"
    audio_dir.mkdir(parents=True)
    for song_id, name in [
        ("game.mp3", "asc_game_theme.mp3"),
        ("speech.ogg", "speech_librispeech.ogg"),
        ("trumpet.ogg", "trumpet_loop.ogg"),
        ("robin.ogg", "robin_chirp.ogg"),
    ]:
        shutil.copy(audio_assets / name, audio_dir / song_id)
    shutil.move(wav("hush.wav", np.zeros(4 * 22050), 22050), audio_dir / "hush.wav")
    (audio_dir / "lyrics.mp3").write_text("not a song\n" * 100)
    return audio_dir.parent


def featurize(root: Path, **kwargs: object) -> audio.cache.FeaturizeSummary:
    return featurize_dataset(root, workers=1, progress=False, **kwargs)  # type: ignore[arg-type]


def test_cache_holds_the_front_ends_mels(dataset: Path) -> None:
    summary = featurize(dataset)
    assert (
        summary.cache_dir
        == default_cache_dir(dataset)
        == dataset / "mel_cache" / (FRONT_END.fingerprint()[:12])
    )
    assert (summary.computed, summary.skipped_up_to_date, summary.cached) == (3, 0, 3)
    assert {song: reason.split(":")[0] for song, reason in summary.failed.items()} == FAILED

    cache = MelCache.open(summary.cache_dir)
    assert cache.config == FRONT_END
    assert cache.song_ids == CACHED
    assert sorted(cache.failures) == sorted(FAILED)
    assert "robin.ogg" in cache.failures["robin"]
    for song_id, name in zip(CACHED, ["game.mp3", "speech.ogg", "trumpet.ogg"], strict=True):
        stored = cache.load(song_id)
        assert isinstance(stored, np.memmap) and stored.dtype == np.float16
        expected = log_mel(dataset / "audio" / name)
        assert stored.shape == expected.shape == (128, cache.n_frames(song_id))
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(KeyError, match="too_short"):
        cache.load("robin")


def test_rerun_skips_and_a_touched_file_is_recomputed(dataset: Path) -> None:
    featurize(dataset)
    again = featurize(dataset)
    assert (again.computed, again.skipped_up_to_date, len(again.failed)) == (0, 3, 3)
    trumpet = dataset / "audio" / "trumpet.ogg"
    stat = trumpet.stat()
    os.utime(trumpet, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = featurize(dataset)
    assert (touched.computed, touched.skipped_up_to_date) == (1, 2)


def test_interrupted_run_resumes(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_model_input = audio.cache.model_input
    calls = []

    def interrupted_on_second_song(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_model_input(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audio.cache, "model_input", interrupted_on_second_song)
    with pytest.raises(KeyboardInterrupt):
        featurize(dataset)
    monkeypatch.undo()
    cache_dir = default_cache_dir(dataset)
    with pytest.raises(FileNotFoundError, match="unfinished"):
        MelCache.open(cache_dir)
    # A temporary file left by a process killed mid-write.
    (cache_dir / "speech.npy.4242.tmp").write_bytes(b"\x93NUMPY torn")

    resumed = featurize(dataset)
    assert (resumed.computed, resumed.skipped_up_to_date) == (2, 1)  # game was done
    assert not list(cache_dir.glob("*.tmp"))
    assert MelCache.open(cache_dir).song_ids == CACHED


def test_changed_and_removed_songs(dataset: Path, wav) -> None:
    featurize(dataset)
    shutil.move(wav("quiet.wav", np.zeros(5 * 22050), 22050), dataset / "audio" / "trumpet.ogg")
    (dataset / "audio" / "speech.ogg").unlink()
    summary = featurize(dataset)
    assert (summary.computed, summary.removed) == (0, 1)
    assert summary.failed["trumpet"].startswith("silent")
    cache = MelCache.open(summary.cache_dir)
    assert cache.song_ids == ["game"]
    assert sorted(path.stem for path in summary.cache_dir.glob("*.npy")) == ["game"]


def test_another_front_end_is_refused(dataset: Path) -> None:
    summary = featurize(dataset)
    other = FrontEndConfig(n_mels=64)
    assert default_cache_dir(dataset, other) != summary.cache_dir
    with pytest.raises(FrontEndMismatchError, match="n_mels"):
        featurize(dataset, cache_dir=summary.cache_dir, config=other)
    saved = json.loads((summary.cache_dir / "front_end.json").read_text())
    assert FrontEndConfig.from_dict(saved) == FRONT_END


def test_process_pool_stores_the_same_mels(dataset: Path, tmp_path: Path) -> None:
    alone = featurize(dataset, cache_dir=tmp_path / "alone")
    pooled = featurize_dataset(dataset, tmp_path / "pooled", workers=2, progress=False)
    assert (pooled.computed, pooled.failed) == (3, alone.failed)
    for song_id in CACHED:
        np.testing.assert_array_equal(
            MelCache.open(alone.cache_dir).load(song_id),
            MelCache.open(pooled.cache_dir).load(song_id),
        )


def test_featurize_command(dataset: Path, tmp_path: Path) -> None:
    from cli.audio import featurize as featurize_command

    command = typer.Typer()
    command.command()(featurize_command)
    cache_dir = tmp_path / "cli_cache"
    result = CliRunner().invoke(
        command, [str(dataset), "--cache", str(cache_dir), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "3 songs cached: 3 computed" in result.output
    assert "robin" in result.output and "too_short" in result.output
    assert MelCache.open(cache_dir).song_ids == CACHED
    missing = CliRunner().invoke(command, [str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no audio folder" in " ".join(missing.output.split())


def test_featurize_refuses_non_finite_samples_and_normalises_hot_ones(tmp_path: Path) -> None:
    """The front end's one rule on sample values, applied by featurize: NaN and inf are
    failures naming the file; +6 dBFS and 1e30 are cached, finite."""
    from tests.hostile_audio import hostile_corpus

    corpus = hostile_corpus()
    audio_dir = tmp_path / "world" / "audio"
    audio_dir.mkdir(parents=True)
    cases = {
        "nan": "float-wav-nan",
        "inf": "float-wav-inf",
        "huge": "float-wav-1e30",
        "hot": "float-wav-plus-6-dbfs",
    }
    for song_id, case in cases.items():
        (audio_dir / f"{song_id}.wav").write_bytes(corpus[case].data)
    summary = featurize(audio_dir.parent)
    assert sorted(summary.failed) == ["inf", "nan"]
    for song_id in ("inf", "nan"):
        assert summary.failed[song_id].startswith(f"invalid_samples: {song_id}.wav: ")
    cache = MelCache.open(summary.cache_dir)
    assert cache.song_ids == ["hot", "huge"]
    for song_id in cache.song_ids:
        assert np.isfinite(cache.load(song_id)).all()


def test_a_nan_mel_cached_before_the_check_is_computed_again(tmp_path: Path) -> None:
    """A cache written before mels were checked finite may hold the NaN mel of a NaN
    recording under an up-to-date stamp: the next featurize reads it once, finds it not
    finite, and computes the song again, which the front end now refuses."""
    from tests.hostile_audio import hostile_corpus

    audio_dir = tmp_path / "world" / "audio"
    audio_dir.mkdir(parents=True)
    source = audio_dir / "nan.wav"
    source.write_bytes(hostile_corpus()["float-wav-nan"].data)
    (audio_dir / "hot.wav").write_bytes(hostile_corpus()["float-wav-plus-6-dbfs"].data)
    summary = featurize(audio_dir.parent)
    cache_dir = summary.cache_dir
    stamp = audio.cache.SourceStamp.of(source).to_dict()  # what the old code stored
    np.save(cache_dir / "nan.npy", np.full((FRONT_END.n_mels, 300), np.nan, np.float16))
    (cache_dir / "nan.stamp.json").write_text(json.dumps({**stamp, "n_frames": 300}))
    (cache_dir / "failures.json").write_text("{}")
    hot_stamp = json.loads((cache_dir / "hot.stamp.json").read_text())
    del hot_stamp["finite"]  # an old stamp of a good mel: checked, kept, marked
    (cache_dir / "hot.stamp.json").write_text(json.dumps(hot_stamp))

    again = featurize(audio_dir.parent)
    assert (again.computed, again.skipped_up_to_date) == (0, 1)
    assert again.failed["nan"].startswith("invalid_samples: nan.wav")
    assert not (cache_dir / "nan.npy").exists()
    assert json.loads((cache_dir / "hot.stamp.json").read_text())["finite"] is True
