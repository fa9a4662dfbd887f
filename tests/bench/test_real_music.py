"""bench.real_music: its untrained control and its neighbour count (the excerpts themselves
are Debian packages downloaded at run time, never in a test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.real_music import K, precision_at_k, untrained_twins
from training.checkpoint import load_encoder
from training.run_data import load_run_data


def test_precision_counts_same_label_neighbours() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    labels = np.repeat(np.arange(3), K + 1)
    tight = centres[labels] + rng.normal(size=(len(labels), 3))
    assert precision_at_k(tight, labels) == 1.0
    # one label's rows moved onto another's centre: their neighbours are half theirs
    mixed = tight.copy()
    mixed[labels == 2] = centres[1] + rng.normal(size=(K + 1, 3))
    assert 0.3 < precision_at_k(mixed, labels) < 0.8


def test_untrained_twin_has_the_run_sizes_and_nothing_learned(trained_run: Path) -> None:
    trained = load_encoder(trained_run / "models" / "cnn")
    twin, again, other = untrained_twins(trained_run, seeds=(0, 0, 1), songs=20)
    assert twin.dims == trained.dims and not twin.training
    first = twin.convs[0].weight
    assert not torch.allclose(first, trained.convs[0].weight)
    assert torch.equal(again.convs[0].weight, first)
    assert not torch.equal(other.convs[0].weight, first)
    # nothing learned: the affine parts of the batch norms are torch's initial ones
    assert torch.equal(twin.input_norm.weight, torch.ones_like(twin.input_norm.weight))
    # its input statistics are the clips' own: the mean over songs of each clip's band means
    data = load_run_data(trained_run)
    songs, _ = data.cached(data.factorization.song_ids)
    means = np.mean([np.asarray(data.cache.load(s), np.float64).mean(1) for s in songs[:20]], 0)
    np.testing.assert_allclose(twin.input_norm.running_mean.numpy(), means, rtol=1e-4, atol=1e-4)
    # and its content projection was fitted: orthonormal columns (as many as there were
    # songs, the rest zero), not the initial identity
    projection = twin.content_projection.numpy().astype(np.float64)
    kept = np.diag(np.arange(projection.shape[1]) < 20).astype(float)
    np.testing.assert_allclose(projection.T @ projection, kept, atol=1e-5)
    assert not np.allclose(projection, np.eye(*projection.shape))
