"""Tiny seeded listen data with latent taste structure, for the factorization tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def latent_listens(
    n_users: int = 300, n_songs: int = 150, n_unheard: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Listens drawn from a low-rank taste model with power-law song popularity and user
    activity, as `Dataset.listens` holds them; plus the catalogue (with `n_unheard` songs
    nobody played)."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, 4))
    songs = rng.normal(size=(n_songs, 4))
    popularity = rng.permutation(1.0 / (np.arange(n_songs) + 5.0))
    logits = users @ songs.T + np.log(popularity)[None, :]
    # Gumbel top-k: each user draws `activity` distinct songs in proportion to exp(logits).
    ranked = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)
    activity = np.minimum(3 + rng.zipf(1.8, n_users), n_songs // 2)
    taken = np.arange(n_songs)[None, :] < activity[:, None]
    user_index = np.broadcast_to(np.arange(n_users)[:, None], ranked.shape)[taken]
    song_index = ranked[taken]
    catalogue = [f"S{i:04d}" for i in range(n_songs + n_unheard)]
    listens = pd.DataFrame(
        {
            "user_id": pd.Categorical([f"U{i:04d}" for i in user_index]),
            "song_id": pd.Categorical(np.array(catalogue)[song_index]),
            "play_count": np.minimum(rng.zipf(2.0, song_index.size), 500).astype(np.int32),
        }
    )
    return listens, catalogue


@pytest.fixture(scope="session")
def make_listens() -> Callable[..., tuple[pd.DataFrame, list[str]]]:
    """`latent_listens` itself, for tests that need another size."""
    return latent_listens


@pytest.fixture(scope="session")
def listens_and_catalogue() -> tuple[pd.DataFrame, list[str]]:
    return latent_listens()


@pytest.fixture(scope="session")
def tiny_dataset(
    tmp_path_factory: pytest.TempPathFactory,
    listens_and_catalogue: tuple[pd.DataFrame, list[str]],
) -> Path:
    """A dataset folder (listens.tsv, songs.csv, no audio) following the corpus contract."""
    listens, catalogue = listens_and_catalogue
    root = tmp_path_factory.mktemp("tiny_dataset")
    listens.to_csv(root / "listens.tsv", sep="\t", header=False, index=False)
    pd.DataFrame(
        {"song_id": catalogue, "title": catalogue, "artist": ["someone"] * len(catalogue)}
    ).to_csv(root / "songs.csv", index=False)
    return root
