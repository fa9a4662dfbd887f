"""The artist and hybrid models of a run: `RUN/models/artist/` and `RUN/models/hybrid/`.

Fitted after the CNN (`train_run`), on the same factorization:

- `artist`: `training.artist_prior` on the training songs' WMF factors, the shrinkage
  chosen by validation mAP; its test song vectors are the priors of their artists (zero
  for a cold artist: the artist alone says nothing about it);
- `hybrid`: `training.fusion` fitted on the validation songs with audio (the CNN's
  whole-clip predictions, their artists' priors, their folded-in factors; the squares
  those of the users' scores, `score_metric`); its test song
  vectors are `hybrid_vectors` of the CNN's test predictions, i.e. the CNN's own vectors
  for cold artists.

Both write `test_song_factors.npy` like any content model, so `coldstart evaluate` scores
them beside the others. `models/artist/` keeps the priors and `models/hybrid/fusion.json`
the weights: what a published version serves with (`pipeline.registry`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from artifacts.files import write_json_atomic
from artifacts.manifest import read_manifest, write_manifest
from artifacts.run_layout import (
    ARTIST_NAME,
    CNN_NAME,
    HYBRID_NAME,
    MODELS_DIR,
    TEST_FACTORS_FILE,
)
from corpus.artists import UNKNOWN_ARTIST
from training.artist_prior import ARTIST_KIND, fit_artist_priors
from training.checkpoint import MANIFEST_KIND as CNN_KIND
from training.checkpoint import load_encoder
from training.fusion import (
    FUSION_FILE,
    HYBRID_KIND,
    fit_fusion,
    hybrid_vectors,
    score_metric,
)
from training.inference import predict_cached
from training.run_data import RunData, fresh_model_folder, ranking_scorer, song_artists


def train_artist_and_hybrid(data: RunData, batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """Fit the priors and the fusion on `data`, write both model folders; return their
    manifests by name. Needs a finished `models/cnn/` trained on the same factorization,
    and `data` reading the mel cache of its front end."""
    started = time.perf_counter()
    f = data.factorization
    artist_of = song_artists(data.dataset_root)
    train_artists = [artist_of.get(song, UNKNOWN_ARTIST) for song in f.song_ids]
    valid_artists = [artist_of.get(song, UNKNOWN_ARTIST) for song in f.valid_song_ids]
    test_artists = [artist_of.get(song, UNKNOWN_ARTIST) for song in f.test_song_ids]

    prior_rows = data.validation_rows(with_audio=False)
    priors, by_shrinkage = fit_artist_priors(
        train_artists,
        f.song_factors,
        [valid_artists[row] for row in prior_rows],
        ranking_scorer(data, prior_rows),
    )
    test_priors, test_counts = priors.lookup(test_artists)
    artist_dir = fresh_model_folder(data.run_dir / MODELS_DIR / ARTIST_NAME)
    np.save(artist_dir / TEST_FACTORS_FILE, test_priors)
    artist_manifest = write_manifest(
        artist_dir,
        kind=ARTIST_KIND,
        files=[*priors.save(artist_dir), TEST_FACTORS_FILE],
        parameters={"shrinkage": priors.shrinkage},
        parents=data.parents,
        dataset_fingerprint=data.fingerprint,
        extra={
            "validation": {
                "map_by_shrinkage": {str(k): v for k, v in by_shrinkage.items()},
                "map": by_shrinkage[priors.shrinkage],
            },
            "artists": len(priors.artist_ids),
            "test_songs_with_prior": int(np.count_nonzero(test_counts)),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )

    cnn_dir = data.run_dir / MODELS_DIR / CNN_NAME
    cnn_manifest = read_manifest(cnn_dir, kind=CNN_KIND)
    encoder = load_encoder(cnn_dir, data.cache.config)
    valid_ids, valid_rows = data.validation()
    valid_cnn = predict_cached(encoder, data.cache, valid_ids, batch_size)
    valid_priors, valid_counts = priors.lookup([valid_artists[row] for row in valid_rows])
    weights = fit_fusion(
        valid_cnn,
        valid_priors,
        valid_counts,
        f.valid_song_factors[valid_rows],
        metric=score_metric(f.user_factors),
    )
    score_valid = ranking_scorer(data, valid_rows)
    test_cnn = np.load(cnn_dir / TEST_FACTORS_FILE, allow_pickle=False)
    hybrid_dir = fresh_model_folder(data.run_dir / MODELS_DIR / HYBRID_NAME)
    np.save(
        hybrid_dir / TEST_FACTORS_FILE, hybrid_vectors(test_cnn, test_priors, test_counts, weights)
    )
    write_json_atomic(hybrid_dir / FUSION_FILE, weights.to_json())
    hybrid_manifest = write_manifest(
        hybrid_dir,
        kind=HYBRID_KIND,
        files=[FUSION_FILE, TEST_FACTORS_FILE],
        parameters={"edges": list(weights.edges), "objective": "user_scores"},
        parents={
            **data.parents,
            f"model:{CNN_NAME}": str(cnn_manifest["digest"]),
            f"model:{ARTIST_NAME}": str(artist_manifest["digest"]),
        },
        dataset_fingerprint=data.fingerprint,
        extra={
            "validation": {
                # fitted on these songs: an optimistic figure, beside the CNN's on the same songs
                "map": score_valid(hybrid_vectors(valid_cnn, valid_priors, valid_counts, weights)),
                "cnn_map": score_valid(valid_cnn),
                "songs_with_prior": int(np.count_nonzero(valid_counts)),
            },
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return {ARTIST_NAME: artist_manifest, HYBRID_NAME: hybrid_manifest}
