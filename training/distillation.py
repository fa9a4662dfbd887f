"""The teacher's features of a dataset's songs, the targets a student distils: computed once.

A student (an architecture whose `ContentEncoder.teacher` names another) learns to predict
its teacher's pooled features of the same audio beside the factors. The teacher is costly
(`musicnn-msd`: about 0.15 CPU-s per 3-s patch), so each song's features are computed once,
from its audio decoded behind the teacher's own front end (no mel cache of that front end
is needed), and kept beside the mel caches:

    DATASET/mel_cache/teacher-<fingerprint[:12]>/
        <song_id>.npy          (pooled_dims,) float32, the teacher's pooled features
        <song_id>.stamp.json   the audio file's `SourceStamp` (recomputed when it changes)

The fingerprint (`teacher_fingerprint`) covers the teacher's architecture, dims, weights,
front end and `MAX_PATCHES`, so features of another teacher are never read. Each feature
file is written before its stamp, both atomically, so an interrupted run leaves no torn
file. A song the teacher cannot hear (`AudioError`, or shorter than a patch) has no
features: its row is NaN and the loss leaves it out.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from artifacts.files import write_atomic, write_text_atomic
from audio.cache import STAMP_SUFFIX, MelCache, SourceStamp
from audio.errors import AudioError
from audio.frontend import model_input
from training.encoders.base import ContentEncoder

# The teacher hears at most this many patches of its training crops (musicnn: 187 frames,
# 2.99 s) from the middle of a clip (6 s of a 12-s world clip or a 30-s preview), so that
# its cost per song stays bounded: about 0.1 CPU-s for musicnn-msd on an idle core, what a
# demo's budget affords (the "one or two patches per song"; BENCHMARKS.md).
MAX_PATCHES = 2
FOLDER_PREFIX = "teacher-"


@dataclass(frozen=True)
class TeacherFeatures:
    """`features` (n_songs, pooled_dims) float32, rows following the songs asked for (NaN:
    the teacher could not hear it); `computed`: songs computed now (the rest were cached);
    `seconds`: the wall-clock time of computing them; `cache_dir`: where they are kept."""

    features: np.ndarray
    computed: int
    seconds: float
    cache_dir: Path

    @property
    def heard(self) -> np.ndarray:
        """(n_songs,) bool: the rows that hold features."""
        return np.isfinite(self.features).all(axis=1)

    def followed_by(self, other: TeacherFeatures) -> TeacherFeatures:
        """These songs' rows, then `other`'s (the costs added up; this one's folder)."""
        return TeacherFeatures(
            np.vstack([self.features, other.features]),
            self.computed + other.computed,
            self.seconds + other.seconds,
            self.cache_dir,
        )


class JoinedMels:
    """Two mel caches read as one (`training.inference.MelSource`): a song is read from the
    first that has it. A student's training crops come from the world's cache and from the
    cache of audio it distils on without listens (`CNNSettings.distill_audio`)."""

    def __init__(self, first: MelCache, second: MelCache) -> None:
        self.first, self.second = first, second

    def _holding(self, song_id: str) -> MelCache:
        return self.first if song_id in self.first else self.second

    def n_frames(self, song_id: str) -> int:
        return self._holding(song_id).n_frames(song_id)

    def load(self, song_id: str) -> np.ndarray:
        return self._holding(song_id).load(song_id)


def teacher_fingerprint(teacher: ContentEncoder) -> str:
    """sha256 of what the teacher's features depend on (architecture, dims, front end,
    `MAX_PATCHES`, and the weights below its pooled features: not its head's nor its
    content projection, which a teacher built for the purpose draws at random)."""
    weights = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        if name.startswith(("head.", "content_projection")):
            continue
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    description = {
        "architecture": teacher.name,
        "dims": teacher.dims.to_dict(),
        "front_end": teacher.config.fingerprint(),
        "max_patches": MAX_PATCHES,
        "weights": weights.hexdigest(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def teacher_cache_dir(dataset_root: Path, teacher: ContentEncoder) -> Path:
    """`DATASET/mel_cache/teacher-<fingerprint[:12]>`."""
    return Path(dataset_root) / "mel_cache" / f"{FOLDER_PREFIX}{teacher_fingerprint(teacher)[:12]}"


def middle_patches(mel: np.ndarray, window_frames: int) -> np.ndarray:
    """The middle `MAX_PATCHES` windows' frames of `mel` (n_mels, T): all of it when shorter."""
    keep = MAX_PATCHES * window_frames
    start = max(0, (mel.shape[1] - keep) // 2)
    return mel[:, start : start + keep]


def teacher_features(
    dataset_root: Path, song_ids: Sequence[str], teacher: ContentEncoder
) -> TeacherFeatures:
    """The teacher's pooled features of `song_ids`' audio (`DATASET/audio`), read from the
    cache when their stamp matches the audio file, else computed (whole middle of the clip,
    at most `MAX_PATCHES` patches, through `teacher.pooled_mel` in eval mode) and cached."""
    from corpus.dataset import find_audio

    cache_dir = teacher_cache_dir(dataset_root, teacher)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = find_audio(Path(dataset_root))
    features = np.full((len(song_ids), teacher.dims.pooled_dims), np.nan, np.float32)
    computed, started = 0, time.perf_counter()
    teacher = teacher.eval()
    for row, song in enumerate(song_ids):
        if song not in sources:
            continue
        stamp = json.dumps(SourceStamp.of(sources[song]).to_dict(), sort_keys=True)
        path, stamp_path = cache_dir / f"{song}.npy", cache_dir / f"{song}{STAMP_SUFFIX}"
        if stamp_path.is_file() and stamp_path.read_text() == stamp:
            features[row] = np.load(path, allow_pickle=False)
            continue
        vector = _features_of(sources[song], teacher)
        stamp_path.unlink(missing_ok=True)
        write_atomic(path, partial(np.save, arr=vector, allow_pickle=False), sync=False)
        write_text_atomic(stamp_path, stamp, sync=False)
        features[row] = vector
        computed += 1
    return TeacherFeatures(features, computed, time.perf_counter() - started, cache_dir)


def _features_of(source: Path, teacher: ContentEncoder) -> np.ndarray:
    """The teacher's pooled features (pooled_dims,) float32 of one audio file; NaN when it
    cannot hear it (an `AudioError`, or shorter than it needs)."""
    try:
        mel = model_input(source, teacher.config, name=source.name)
    except AudioError:
        return np.full(teacher.dims.pooled_dims, np.nan, np.float32)
    mel = middle_patches(mel, teacher.config.window_frames)
    if mel.shape[1] < teacher.dims.min_frames:
        return np.full(teacher.dims.pooled_dims, np.nan, np.float32)
    with torch.no_grad():
        return teacher.pooled_mel(torch.from_numpy(mel)[None])[0].numpy().astype(np.float32)


def agreement(
    student: ContentEncoder, pooled: np.ndarray, teacher: ContentEncoder, targets: np.ndarray
) -> dict[str, float]:
    """How closely a student hears like its teacher on songs it did not learn from.

    `pooled` (n, pooled_dims) the student's pooled features of whole clips, `targets` the
    teacher's features of the same songs (NaN rows left out). `r2`: the share of the
    teacher features' variance the student's explain; for students with the teacher's tag
    layer, `tag_mae` the mean absolute difference of the tags' probabilities and
    `top5_overlap` the mean share of the teacher's five most probable tags among the
    student's five."""
    heard = np.isfinite(targets).all(axis=1)
    mine, theirs = pooled[heard].astype(np.float64), targets[heard].astype(np.float64)
    if not len(theirs):
        return {}
    spread = float(((theirs - theirs.mean(axis=0)) ** 2).sum())
    result = {"songs": float(len(theirs)), "r2": 1.0 - float(((mine - theirs) ** 2).sum()) / spread}
    if student.tag_names and student.tag_names == teacher.tag_names:
        with torch.no_grad():
            mine_tags = student.tag_probabilities(torch.from_numpy(pooled[heard])).numpy()
            their_tags = teacher.tag_probabilities(torch.from_numpy(targets[heard])).numpy()
        top_mine = np.argsort(-mine_tags, axis=1)[:, :5]
        top_theirs = np.argsort(-their_tags, axis=1)[:, :5]
        overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top_mine, top_theirs, strict=True)]
        result["tag_mae"] = float(np.abs(mine_tags - their_tags).mean())
        result["top5_overlap"] = float(np.mean(overlap))
    return result
