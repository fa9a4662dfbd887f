"""bench.hybrid_ceiling: its stand-in world is the real world's listens, and it runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.hybrid_ceiling import analyse, listens_world, read_truth
from corpus.dataset import LISTENS_FILE, SONGS_FILE
from world.generate import TRUTH_FILE


def test_listens_world_is_the_world_without_audio(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "world"
    listens_world(out, seed=7, n_songs=120, n_users=300)  # the tiny world's sizes and seed
    for name in (LISTENS_FILE, SONGS_FILE):
        assert (out / name).read_bytes() == (tiny_world / name).read_bytes()
    real, ours = (json.loads((p / TRUTH_FILE).read_text()) for p in (tiny_world, out))
    assert ours["users"] == real["users"] and ours["artists"] == [
        {k: v for k, v in a.items() if k != "production"} for a in real["artists"]
    ]
    assert all(s.items() <= r.items() for s, r in zip(ours["songs"], real["songs"], strict=True))
    truth = read_truth(out)
    assert truth.songs.families.shape == (120, 8) and len(truth.listeners.user_ids) == 300
    assert np.isclose(truth.songs.popularity.std(), 1.0)


def test_ceiling_rows_on_the_tiny_world(tiny_world: Path, tmp_path: Path) -> None:
    result = analyse(tiny_world, tmp_path / "run")
    rows = result["rows"]
    for name in ("upper_bound", "oracle audio + artist prior (fusion)", "true taste: audible"):
        assert set(rows[name]) == {"all", "cold_track", "cold_artist"}
    # knowing every listener's whole taste ranks far above chance
    assert rows["true taste: + song popularity"]["all"][1] > 0.7
    assert rows["upper_bound"]["all"][1] > rows["artist prior alone"]["all"][1]
