"""A tiny synthetic world for the training tests: songs whose timbre follows their factors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from audio.config import FRONT_END
from training.encoders.base import ContentEncoder
from training.encoders.dieleman import DielemanDims, DielemanEncoder

N_FACTORS = 4


@dataclass
class SyntheticWorld:
    """`mels[song_id]` (n_mels, n_frames) float16 drawn from 4 timbres mixed by the song's
    `factors` row; `users` (n_users, F); relevance = each user's top songs by dot product."""

    song_ids: list[str]
    mels: dict[str, np.ndarray]
    factors: np.ndarray
    users: np.ndarray

    def n_frames(self, song_id: str) -> int:
        return int(self.mels[song_id].shape[1])

    def load(self, song_id: str) -> np.ndarray:
        return self.mels[song_id]

    def relevance(self, rows: slice, per_user: int = 5) -> sp.csr_matrix:
        songs = self.factors[rows]
        top = np.argsort(-(self.users @ songs.T), axis=1)[:, :per_user]
        users = np.repeat(np.arange(self.users.shape[0]), per_user)
        return sp.csr_matrix(
            (np.ones(users.size), (users, top.ravel())), shape=(self.users.shape[0], len(songs))
        )


@pytest.fixture(scope="session")
def synthetic_world() -> SyntheticWorld:
    rng = np.random.default_rng(0)
    n_songs, n_users = 160, 80
    factors = rng.normal(size=(n_songs, N_FACTORS)).astype(np.float32)
    timbres = rng.normal(scale=2.0, size=(N_FACTORS, FRONT_END.n_mels)) - 6.0
    mix = np.exp(factors) / np.exp(factors).sum(axis=1, keepdims=True)
    mels = {}
    for song in range(n_songs):
        n_frames = int(rng.integers(130, 200))
        which = rng.choice(N_FACTORS, size=n_frames, p=mix[song])
        noise = rng.normal(scale=0.3, size=(FRONT_END.n_mels, n_frames))
        mels[f"s{song:03d}"] = (timbres[which].T + noise).astype(np.float16)
    users = rng.normal(size=(n_users, N_FACTORS)).astype(np.float32)
    return SyntheticWorld(list(mels), mels, factors, users)


@pytest.fixture(scope="module")
def encoder() -> ContentEncoder:
    """A small untrained encoder (8 factors, a 12-d content embedding) in eval mode, with
    batch-norm statistics and a fitted content projection."""
    from training.content_space import projection_of

    torch.manual_seed(0)
    net = DielemanEncoder(
        DielemanDims(n_factors=8, channels=(16, 16, 32), hidden=(32,), content_dims=12)
    )
    # Fresh batch norms are identities; give them statistics so the tests mean something.
    net.train()
    with torch.no_grad():
        net.forward_mel(torch.randn(8, FRONT_END.n_mels, 200) * 3 - 5)
        net.eval()
        pooled = net.pooled_mel(torch.randn(40, FRONT_END.n_mels, 200) * 3 - 5).numpy()
    net.set_content_projection(torch.from_numpy(projection_of(pooled, 12)))
    return net
