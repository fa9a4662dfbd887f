"""Batches for the content model, read from the memory-mapped mel cache.

Training samples are random 3-second crops (`window_frames` frames) of the training
songs, several per song per epoch, each paired with the song's WMF factors. The crops of
an epoch are drawn by `CropSampler` in the main process from (seed, epoch), so the
sequence is the same with or without worker processes. Validation and prediction take
whole clips, zero-padded into batches with their lengths (the encoder masks the padding).

Reading a crop copies only the crop's frames out of the song's float16 memmap, so memory
stays flat however large the catalogue; see bench/training.py for the cost of loading
against a training step.
"""

from __future__ import annotations

import functools
import resource
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

MAX_OPEN_MELS = 4096


class MelSource(Protocol):
    """What the loaders read: `audio.cache.MelCache`, or any store of log-mels by song id."""

    def n_frames(self, song_id: str) -> int: ...

    def load(self, song_id: str) -> np.ndarray:
        """The song's log-mel (n_mels, n_frames), float16 or float32, possibly a memmap."""
        ...


class CropSampler(Sampler[tuple[int, int]]):
    """Yields (song index, first frame) for `crops_per_song` random crops of every song.

    Each pass draws a new shuffled set from `np.random.default_rng([seed, epoch])` and
    advances the epoch, so a seeded run sees the same crops in the same order.
    """

    def __init__(self, n_frames: np.ndarray, window_frames: int, crops_per_song: int, seed: int):
        if n_frames.size and int(n_frames.min()) < window_frames:
            raise ValueError(f"every song needs at least {window_frames} frames to be cropped")
        self.n_frames = np.asarray(n_frames, dtype=np.int64)
        self.window_frames = window_frames
        self.crops_per_song = crops_per_song
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.n_frames.size * self.crops_per_song

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        songs = rng.permutation(np.repeat(np.arange(self.n_frames.size), self.crops_per_song))
        room = self.n_frames[songs] - self.window_frames + 1
        starts = (rng.random(songs.size) * room).astype(np.int64)
        return iter(zip(songs.tolist(), starts.tolist(), strict=True))


def open_mel_limit() -> int:
    """How many songs' memmaps a loader keeps open: each holds a file descriptor."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN_MELS
    return max(16, min(MAX_OPEN_MELS, soft // 4))


class CropDataset(Dataset[tuple[Tensor, Tensor]]):
    """(song index, first frame) -> (log-mel crop (n_mels, window) float16, factors (F,)).

    Opening a song's memmap costs about five times as much as copying a crop out of it,
    so the most recently used `open_mel_limit()` memmaps stay open (per process). The
    DataLoader fetches a whole batch through `__getitems__`, which copies the crops
    straight into one array (use `collate_fn=stacked`). Crops stay float16 as cached:
    half the bytes to copy and to move to a GPU; the encoder casts the batch at once.
    """

    def __init__(
        self, cache: MelSource, song_ids: Sequence[str], factors: np.ndarray, window_frames: int
    ):
        if len(song_ids) != factors.shape[0]:
            raise ValueError(f"{len(song_ids)} songs but {factors.shape[0]} factor rows")
        self.cache = cache
        self.song_ids = list(song_ids)
        self.factors = torch.from_numpy(np.ascontiguousarray(factors, dtype=np.float32))
        self.window_frames = window_frames
        self._open: Callable[[str], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.song_ids)

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes open their own memmaps.
        return {**self.__dict__, "_open": None}

    def _mel(self, song: int) -> np.ndarray:
        if self._open is None:
            self._open = functools.lru_cache(maxsize=open_mel_limit())(self.cache.load)
        return self._open(self.song_ids[song])

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor]:
        mels, factors = self.__getitems__([key])
        return mels[0], factors[0]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """A batch: crops (B, n_mels, window) in the cache's dtype and factors (B, F) float32."""
        first = self._mel(keys[0][0])
        crops = np.empty((len(keys), first.shape[0], self.window_frames), dtype=first.dtype)
        for row, (song, start) in enumerate(keys):
            crops[row] = self._mel(song)[:, start : start + self.window_frames]
        songs = torch.tensor([song for song, _ in keys])
        return torch.from_numpy(crops), self.factors[songs]


def stacked(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Collate for `CropDataset`: its `__getitems__` already returns the stacked batch."""
    return batch


class ClipDataset(Dataset[tuple[Tensor, int]]):
    """Index -> (the song's whole log-mel (n_mels, n_frames) float32, index)."""

    def __init__(self, cache: MelSource, song_ids: Sequence[str]):
        self.cache = cache
        self.song_ids = list(song_ids)

    def __len__(self) -> int:
        return len(self.song_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return torch.from_numpy(np.array(self.cache.load(self.song_ids[index]), np.float32)), index


def pad_clips(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Collate whole clips: (mels (B, n_mels, T_max) zero-padded, lengths (B,), indices (B,))."""
    mels = [mel for mel, _ in items]
    lengths = torch.tensor([mel.shape[1] for mel in mels])
    padded = mels[0].new_zeros((len(mels), mels[0].shape[0], int(lengths.max())))
    for row, mel in enumerate(mels):
        padded[row, :, : mel.shape[1]] = mel
    return padded, lengths, torch.tensor([index for _, index in items])


def clip_loader(
    cache: MelSource, song_ids: Sequence[str], batch_size: int, num_workers: int = 0
) -> DataLoader:
    """Whole clips of `song_ids` in order, padded into batches (see `pad_clips`)."""
    return DataLoader(
        ClipDataset(cache, song_ids),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pad_clips,
    )


class MelDataModule(pl.LightningDataModule):
    """Random crops of the training songs; whole clips of the validation songs.

    `train_factors` (n_train, F) float32 are the targets, rows following
    `train_song_ids`; `valid_song_ids` are predicted whole (their metrics live in the
    LightningModule, which holds the user factors and the validation listens).
    """

    def __init__(
        self,
        cache: MelSource,
        train_song_ids: Sequence[str],
        train_factors: np.ndarray,
        valid_song_ids: Sequence[str],
        *,
        window_frames: int,
        crops_per_song: int = 8,
        batch_size: int = 64,
        clip_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.cache = cache
        self.train_song_ids = list(train_song_ids)
        self.train_factors = train_factors
        self.valid_song_ids = list(valid_song_ids)
        self.window_frames = window_frames
        self.crops_per_song = crops_per_song
        self.batch_size = batch_size
        self.clip_batch_size = clip_batch_size
        self.num_workers = num_workers
        n_frames = np.array([cache.n_frames(song) for song in self.train_song_ids], np.int64)
        self.sampler = CropSampler(n_frames, window_frames, crops_per_song, seed)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            CropDataset(self.cache, self.train_song_ids, self.train_factors, self.window_frames),
            batch_size=self.batch_size,
            sampler=self.sampler,
            collate_fn=stacked,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # A last batch of a few crops would give batch norm noisy statistics.
            drop_last=len(self.sampler) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return clip_loader(self.cache, self.valid_song_ids, self.clip_batch_size, self.num_workers)
