"""Fitting the content embedding of a trained encoder: the service's "content" space.

The head of the encoder regresses listening factors and keeps little of what tells
recordings apart; the globally pooled convolution features below it keep more (on real
soundtracks, BENCHMARKS.md "real music": precision@5 0.234 / 0.269 against the factors'
0.159 / 0.205 on two world seeds). The embedding is those features as they are, compared
by cosine, projected onto their leading `EncoderDims.content_dims` singular directions over
the training songs (uncentred: the projection keeps the raw features' inner products within
that subspace, and so their cosines): 128 of the 384 grouped the soundtracks as all 384
did (0.233 / 0.267), at a third of the index. Centring or standardising the channels
first, whitening, or the head's hidden layer all grouped worse on both seeds.

Fitted once training is done, on the whole clips of at most `FIT_SONGS` training songs, and
stored in the encoder's state dict (`content_projection`): the same projection serves every
song of the version, published or uploaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from training.encoders.base import ContentEncoder
from training.inference import MelSource, cached_rows
from training.run_data import bounded_draw

FIT_SONGS = 20_000


def pooled_cached(
    encoder: ContentEncoder, cache: MelSource, song_ids: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """Whole-clip pooled conv features (len(song_ids), pooled_dims) float32, rows following
    `song_ids`."""
    return cached_rows(
        encoder, cache, song_ids, batch_size, encoder.pooled_mel, encoder.dims.pooled_dims
    )


def projection_of(pooled: np.ndarray, n_components: int) -> np.ndarray:
    """(P, n_components) float32 whose columns are the leading right singular vectors of
    `pooled` (n_songs, P), uncentred: `x @ projection` keeps x's components along the
    directions that carry most of the songs' squared norm. Fewer songs than components:
    the missing columns are zero."""
    _, _, directions = np.linalg.svd(pooled.astype(np.float64), full_matrices=False)
    kept = np.zeros((n_components, pooled.shape[1]))
    kept[: min(n_components, len(directions))] = directions[:n_components]
    return kept.T.astype(np.float32)


def fit_content_space(
    encoder: ContentEncoder,
    cache: MelSource,
    song_ids: Sequence[str],
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, int]:
    """Fit `encoder`'s content projection on `song_ids` (at most `FIT_SONGS` of them, drawn
    with `seed`); returns what the manifest records. A no-op for an encoder whose content
    embedding is its factors (`content_dims` None)."""
    if encoder.dims.content_dims is None:
        return {"songs": 0, "dims": encoder.dims.n_factors}
    ids = [song_ids[row] for row in bounded_draw(len(song_ids), FIT_SONGS, seed)]
    if not ids:
        raise ValueError("fitting the content space needs at least one song")
    projection = projection_of(
        pooled_cached(encoder, cache, ids, batch_size), encoder.dims.projected_dims
    )
    encoder.set_content_projection(torch.from_numpy(projection).to(encoder.content_projection))
    return {"songs": len(ids), "dims": encoder.dims.embedding_dims}
