"""The mel cache: what it stores, skipping and resuming, refusing another front end."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import audio.cache
from audio.cache import MelCache, default_cache_dir, featurize_dataset
from audio.config import FRONT_END, FrontEndConfig, FrontEndMismatchError
from audio.decode import decode_usable
from audio.frontend import front_end_module, log_mel

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


EXCERPT = dataclasses.replace(FRONT_END, excerpt_seconds=4.0)


def test_an_excerpt_bounds_each_songs_bytes_and_the_cache_evicts_and_recomputes(
    tmp_path: Path, wav
) -> None:
    """A front end with `excerpt_seconds` caches each song's centred excerpt only, so a
    song's bytes are bounded whatever its length; a song leaving is evicted, a changed
    recording recomputed, an unchanged one skipped."""
    rng = np.random.default_rng(3)
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    lengths = {"short": 3.5, "long": 12.0, "longer": 30.0}
    for song, seconds in lengths.items():
        samples = 0.2 * rng.standard_normal(int(seconds * 22050))
        shutil.move(wav(f"{song}.wav", samples, 22050), audio_dir / f"{song}.wav")
    summary = featurize(tmp_path, config=EXCERPT)
    assert summary.cache_dir == default_cache_dir(tmp_path, EXCERPT) != default_cache_dir(tmp_path)
    cache = MelCache.open(summary.cache_dir)
    bound = EXCERPT.n_frames(4 * 22050)
    assert cache.n_frames("short") == FRONT_END.n_frames(int(3.5 * 22050)) < bound
    assert cache.n_frames("long") == cache.n_frames("longer") == bound
    sizes = {song: (summary.cache_dir / f"{song}.npy").stat().st_size for song in lengths}
    assert sizes["long"] == sizes["longer"] == 128 * bound * 2 + 128  # float16 + .npy header
    # the centred 4 s: the full front end's mel of the middle samples, frame for frame
    decoded = decode_usable(audio_dir / "longer.wav").samples
    middle = decoded[(decoded.size - 4 * 22050) // 2 :][: 4 * 22050]
    expected = front_end_module(FRONT_END)(torch.from_numpy(np.ascontiguousarray(middle)))[0]
    np.testing.assert_allclose(cache.load("longer").astype(np.float32), expected, atol=2e-2)

    (audio_dir / "short.wav").unlink()
    samples = 0.2 * rng.standard_normal(20 * 22050)
    shutil.move(wav("longer.wav", samples, 22050), audio_dir / "longer.wav")  # a new file
    again = featurize(tmp_path, config=EXCERPT)
    assert (again.removed, again.computed, again.skipped_up_to_date) == (1, 1, 1)
    assert sorted(p.stem for p in again.cache_dir.glob("*.npy")) == ["long", "longer"]
    assert MelCache.open(again.cache_dir).n_frames("longer") == bound


def test_an_excerpt_is_its_own_front_end_and_at_least_a_window() -> None:
    assert EXCERPT.fingerprint() != FRONT_END.fingerprint()
    # an unbounded front end keeps the fingerprint it had before the field existed
    assert dataclasses.replace(FRONT_END, excerpt_seconds=None).fingerprint() == (
        FRONT_END.fingerprint()
    )
    assert FrontEndConfig.from_dict(EXCERPT.to_dict()) == EXCERPT
    assert "excerpt_seconds" not in FRONT_END.to_dict()  # what code before the field reads
    with pytest.raises(FrontEndMismatchError, match="shorter than one model window"):
        dataclasses.replace(FRONT_END, excerpt_seconds=2.0)
    samples = np.arange(10 * 22050, dtype=np.float32)
    assert EXCERPT.excerpt(samples)[0] == 3 * 22050 and EXCERPT.excerpt(samples).size == 4 * 22050
    assert FRONT_END.excerpt(samples) is samples
