"""Track vectors computed on Spark (`local[2]`) are `embed_cached`'s, row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio.cache import MelCache, default_cache_dir
from training.checkpoint import load_encoder
from training.inference import embed_cached, track_vector_dims
from training.spark_embed import embed_on_spark


def test_spark_vectors_are_embed_cached(spark: None, trained_run: Path, tiny_world: Path) -> None:
    encoder = load_encoder(trained_run / "models" / "cnn")
    cache = MelCache.open(default_cache_dir(tiny_world))
    # Not in cache order, and a last batch shorter than the others.
    song_ids = list(np.random.default_rng(0).permutation(cache.song_ids)[:45])
    expected = embed_cached(encoder, cache, song_ids, batch_size=8)
    width = track_vector_dims(encoder.dims)

    vectors = embed_on_spark(encoder, cache, song_ids, "local[2]", batch_size=8)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (45, width)
    assert width == encoder.dims.embedding_dims + encoder.dims.n_factors > 16
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)
    assert embed_on_spark(encoder, cache, [], "local[2]").shape == (0, width)


def test_a_song_without_a_mel_is_refused_before_the_job(
    spark: None, trained_run: Path, tiny_world: Path
) -> None:
    encoder = load_encoder(trained_run / "models" / "cnn")
    cache = MelCache.open(default_cache_dir(tiny_world))
    with pytest.raises(KeyError, match="nowhere"):
        embed_on_spark(encoder, cache, [cache.song_ids[0], "nowhere"], "local[2]")
