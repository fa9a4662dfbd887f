"""The teacher's features of a dataset's songs: computed once, cached under the teacher's
fingerprint, recomputed when a song's audio changes; and the agreement a fit reports."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from training.distillation import (
    MAX_PATCHES,
    JoinedMels,
    agreement,
    middle_patches,
    teacher_cache_dir,
    teacher_features,
)
from training.encoders.musicnn_encoders import MusicnnEncoder
from training.encoders.student import StudentDims, StudentEncoder


def small_teacher(seed: int = 0) -> MusicnnEncoder:
    """A narrow musicnn with random weights: the real teacher's code, no weights to fetch."""
    torch.manual_seed(seed)
    return MusicnnEncoder(MusicnnEncoder.small_dims).eval()


def test_features_are_computed_once_and_again_when_the_audio_changes(
    audio_assets: Path, tmp_path: Path
) -> None:
    (tmp_path / "audio").mkdir()
    for name in ("vibe_ace.mp3", "asc_game_theme.mp3"):
        shutil.copy(audio_assets / name, tmp_path / "audio" / name)
    (tmp_path / "audio" / "short.wav").write_bytes(b"not audio")
    songs = ["vibe_ace", "short", "missing", "asc_game_theme"]
    teacher = small_teacher()

    first = teacher_features(tmp_path, songs, teacher)
    assert first.features.shape == (4, teacher.dims.pooled_dims)
    assert first.heard.tolist() == [True, False, False, True] and first.computed == 3
    assert first.cache_dir == teacher_cache_dir(tmp_path, teacher)
    assert first.cache_dir.parent == tmp_path / "mel_cache"  # beside the mel caches
    with torch.no_grad():  # what the teacher gives the clip's middle patches
        from audio.frontend import model_input

        mel = middle_patches(model_input(audio_assets / "vibe_ace.mp3", teacher.config), 187)
        alone = teacher.pooled_mel(torch.from_numpy(mel)[None])[0].numpy()
    np.testing.assert_allclose(first.features[0], alone, rtol=1e-5, atol=1e-6)

    again = teacher_features(tmp_path, songs, teacher)
    assert again.computed == 0
    np.testing.assert_array_equal(again.features, first.features)

    changed = tmp_path / "audio" / "vibe_ace.mp3"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert teacher_features(tmp_path, songs, teacher).computed == 1

    assert teacher_cache_dir(tmp_path, small_teacher(seed=1)) != first.cache_dir  # weights


def test_middle_patches_keep_the_middle_of_a_long_clip() -> None:
    mel = np.arange(10 * 1000, dtype=np.float32).reshape(10, 1000)
    kept = middle_patches(mel, 100)
    assert kept.shape == (10, MAX_PATCHES * 100)
    start = (1000 - MAX_PATCHES * 100) // 2
    np.testing.assert_array_equal(kept, mel[:, start : start + MAX_PATCHES * 100])
    np.testing.assert_array_equal(middle_patches(mel[:, :150], 100), mel[:, :150])


def test_agreement_of_a_student_that_hears_as_its_teacher() -> None:
    student = StudentEncoder(StudentDims(channels=(8, 8, 16), hidden=(8,), teacher_dims=12))
    targets = np.random.default_rng(0).normal(size=(6, 12)).astype(np.float32)
    targets[2] = np.nan
    same = agreement(student, targets.copy(), student, targets)
    assert same["songs"] == 5 and same["r2"] == 1.0
    assert "tag_mae" not in same  # no tag layer
    noisy = agreement(student, np.zeros_like(targets), student, targets)
    assert noisy["r2"] < 0.5


def test_joined_mels_read_each_song_from_the_cache_that_has_it(
    audio_assets: Path, tmp_path: Path
) -> None:
    from audio.cache import MelCache, default_cache_dir, featurize_dataset

    caches = []
    for folder, name in (("world", "vibe_ace.mp3"), ("extra", "asc_game_theme.mp3")):
        (tmp_path / folder / "audio").mkdir(parents=True)
        shutil.copy(audio_assets / name, tmp_path / folder / "audio" / name)
        featurize_dataset(tmp_path / folder, workers=1, progress=False)
        caches.append(MelCache.open(default_cache_dir(tmp_path / folder)))
    joined = JoinedMels(*caches)
    for cache, song in zip(caches, ("vibe_ace", "asc_game_theme"), strict=True):
        assert joined.n_frames(song) == cache.n_frames(song)
        np.testing.assert_array_equal(joined.load(song), cache.load(song))


def test_the_distillation_audio_is_none_of_the_real_music_checks() -> None:
    from bench.distill_music import KEPT, PACKAGES
    from bench.real_music import PACKAGES as REAL_MUSIC

    assert not set(PACKAGES) & (set(REAL_MUSIC) | set(KEPT)) and len(KEPT) == 10
