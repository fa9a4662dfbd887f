"""Batches for the content model, read from the memory-mapped mel cache.

Training samples are random 3-second crops (`window_frames` frames) of the training
songs, several per song per epoch, each paired with the song's WMF factors. The crops of
an epoch are drawn by `CropSampler` in the main process from (seed, epoch), so the
sequence is the same with or without worker processes. Validation and prediction take
whole clips, zero-padded into batches with their lengths (the encoder masks the padding).

Under DDP each process (rank) reads its own share of the songs, split as
`DistributedSampler` splits indices (`rank_share`): the training songs are reshuffled into
new shares every epoch, each rank cropping only its own; the validation songs are split
in order, and the LightningModule gathers the predictions back.

Reading a crop copies only the crop's frames out of the song's float16 memmap, so memory
stays flat however large the catalogue; see bench/training.py for the cost of loading
against a training step.
"""

from __future__ import annotations

import functools
import resource
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from training.inference import ClipDataset, MelSource, pad_clips

MAX_OPEN_MELS = 4096


def rank_share(items: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """`rank`'s share of `items` among `world_size` processes, as `DistributedSampler` splits:
    `items` padded to a multiple of `world_size` by repeating its first ones, then every
    `world_size`-th item from position `rank`. Every share has the same length, so every
    rank runs the same number of batches (a rank that ran out would hang the others)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} processes")
    total = -(-items.size // world_size) * world_size
    return np.resize(items, total)[rank::world_size]


class CropSampler(Sampler[tuple[int, int]]):
    """Yields (song index, first frame) for `crops_per_song` random crops of this rank's songs.

    Each pass deals the songs into `world_size` shares from a permutation drawn from
    (seed, epoch), the same on every rank, keeps share `rank` (see `rank_share`), draws
    this rank's shuffled crops of those songs from (seed, epoch, rank), and advances the
    epoch; Lightning also sets the epoch before each one (`set_epoch`). So a seeded run
    sees the same crops in the same order, and the shares of an epoch are disjoint but
    for the few songs repeated to even them out. One process keeps every song and draws
    from (seed, epoch): numpy's `SeedSequence` ignores trailing zeros, so rank 0's stream
    is the one a single process always drew from.

    `group` > 1 keeps a song's crops together in runs of `group` (the contrastive
    objective's pairs, `training.contrastive`): the shuffled units are a song's
    `crops_per_song // group` groups, each yielding `group` crops of that song in a row
    (each from its own random start), so a batch whose size `group` divides holds whole
    groups. `group` 1 is the plain stream, crop for crop.

    `songs_per_epoch` bounds an epoch on a large catalogue: each epoch takes the first
    `songs_per_epoch` songs of its (seed, epoch) permutation (a new draw every epoch, so
    every song is seen over the epochs) and deals only those into shares. None, or a bound
    at or above the song count, keeps every song in every epoch: the same stream as without
    it. A nightly fit then costs the same however many songs have audio.
    """

    def __init__(
        self,
        n_frames: np.ndarray,
        window_frames: int,
        crops_per_song: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        group: int = 1,
        songs_per_epoch: int | None = None,
    ):
        if songs_per_epoch is not None and songs_per_epoch < 1:
            raise ValueError(f"songs_per_epoch must be at least 1, got {songs_per_epoch}")
        if group < 1 or crops_per_song % group:
            raise ValueError(f"crops_per_song {crops_per_song} is no multiple of group {group}")
        if n_frames.size and int(n_frames.min()) < window_frames:
            raise ValueError(f"every song needs at least {window_frames} frames to be cropped")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.n_frames = np.asarray(n_frames, dtype=np.int64)
        self.window_frames = window_frames
        self.crops_per_song = crops_per_song
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.group = group
        self.songs_per_epoch = songs_per_epoch
        self.epoch = 0

    @property
    def epoch_songs(self) -> int:
        """How many songs one epoch crops (all ranks together)."""
        return min(self.n_frames.size, self.songs_per_epoch or self.n_frames.size)

    def __len__(self) -> int:
        return -(-self.epoch_songs // self.world_size) * self.crops_per_song

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self) -> np.ndarray:
        """This rank's song indices for the current epoch, sorted (repeats where padded)."""
        # A stream no rank crops from: ranks are below world_size.
        order = np.random.default_rng([self.seed, self.epoch, self.world_size])
        songs = order.permutation(self.n_frames.size)[: self.epoch_songs]
        share = rank_share(songs, self.rank, self.world_size)
        return np.sort(share)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        shard = self.shard()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        self.epoch += 1
        units = rng.permutation(np.repeat(shard, self.crops_per_song // self.group))
        songs = np.repeat(units, self.group)
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
    `with_songs`: each batch also carries its crops' song indices (B,) int64, the
    contrastive objective's classes and the artist head's.
    """

    def __init__(
        self,
        cache: MelSource,
        song_ids: Sequence[str],
        factors: np.ndarray,
        window_frames: int,
        with_songs: bool = False,
    ):
        if len(song_ids) != factors.shape[0]:
            raise ValueError(f"{len(song_ids)} songs but {factors.shape[0]} factor rows")
        self.cache = cache
        self.song_ids = list(song_ids)
        self.factors = torch.from_numpy(np.ascontiguousarray(factors, dtype=np.float32))
        self.window_frames = window_frames
        self.with_songs = with_songs
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

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, ...]:
        return tuple(part[0] for part in self.__getitems__([key]))

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> tuple[Tensor, ...]:
        """A batch: crops (B, n_mels, window) in the cache's dtype and factors (B, F) float32
        (and the song indices (B,) with `with_songs`)."""
        first = self._mel(keys[0][0])
        crops = np.empty((len(keys), first.shape[0], self.window_frames), dtype=first.dtype)
        for row, (song, start) in enumerate(keys):
            crops[row] = self._mel(song)[:, start : start + self.window_frames]
        songs = torch.tensor([song for song, _ in keys])
        if self.with_songs:
            return torch.from_numpy(crops), self.factors[songs], songs
        return torch.from_numpy(crops), self.factors[songs]


def stacked(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Collate for `CropDataset`: its `__getitems__` already returns the stacked batch."""
    return batch


class MelDataModule(pl.LightningDataModule):
    """Random crops of the training songs; whole clips of the validation songs.

    `train_factors` (n_train, F) float32 are the targets, rows following
    `train_song_ids`; `valid_song_ids` are predicted whole (their metrics live in the
    LightningModule, which holds the user factors and the validation listens).
    `batch_size` is per process: each rank reads its own share of both song lists (the
    attached trainer's rank and world size; one process without a trainer), so Lightning
    must leave the samplers alone (`Trainer(use_distributed_sampler=False)`).
    `pair_crops`: training batches hold pairs of crops of one song and carry the song
    indices (the contrastive objective's; `batch_size` must be even). `with_songs` alone:
    the plain crop stream, its batches carrying the song indices (the artist head's).
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
        songs_per_epoch: int | None = None,
        batch_size: int = 64,
        clip_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        pair_crops: bool = False,
        with_songs: bool = False,
    ):
        super().__init__()
        if pair_crops and batch_size % 2:
            raise ValueError(f"pairs of crops need an even batch_size, got {batch_size}")
        self.cache = cache
        self.train_song_ids = list(train_song_ids)
        self.train_factors = train_factors
        self.valid_song_ids = list(valid_song_ids)
        self.window_frames = window_frames
        self.crops_per_song = crops_per_song
        self.songs_per_epoch = songs_per_epoch
        self.batch_size = batch_size
        self.clip_batch_size = clip_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pair_crops = pair_crops
        self.with_songs = with_songs or pair_crops
        self.n_frames = np.array([cache.n_frames(song) for song in self.train_song_ids], np.int64)

    def _rank(self) -> tuple[int, int]:
        """(rank, world size) of this process."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._rank()
        sampler = CropSampler(
            self.n_frames,
            self.window_frames,
            self.crops_per_song,
            self.seed,
            rank=rank,
            world_size=world_size,
            group=2 if self.pair_crops else 1,
            songs_per_epoch=self.songs_per_epoch,
        )
        return DataLoader(
            CropDataset(
                self.cache,
                self.train_song_ids,
                self.train_factors,
                self.window_frames,
                with_songs=self.with_songs,
            ),
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=stacked,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # A last batch of a few crops would give batch norm noisy statistics.
            drop_last=len(sampler) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        """This rank's share of the validation clips, in order, each with its position in
        `valid_song_ids` (`ContentModel` gathers the shares and drops the padding repeats)."""
        share = rank_share(np.arange(len(self.valid_song_ids)), *self._rank())
        return DataLoader(
            Subset(ClipDataset(self.cache, self.valid_song_ids), share.tolist()),
            batch_size=self.clip_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=pad_clips,
        )
