"""The one embedding path: a file, its bytes and its cached mel give the same vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artifacts.manifest import ArtifactError
from audio.decode import DecodeLimits
from audio.errors import AudioError
from training.encoders.base import ContentEncoder
from training.inference import (
    embed_audio,
    embed_cached,
    predict_cached,
    split_track_vector,
    track_vector,
    track_vector_dims,
)


def test_training_and_serving_paths_agree(
    encoder: ContentEncoder, audio_assets: Path, tmp_path: Path
) -> None:
    """Training reads the float16 mel cache, serving decodes and runs the encoder's own LogMel:
    both through `training.inference`."""
    from audio.cache import MelCache, default_cache_dir, featurize_dataset
    from audio.frontend import log_mel

    source = audio_assets / "vibe_ace.mp3"
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "vibe.mp3").symlink_to(source)
    featurize_dataset(tmp_path, workers=1, progress=False)
    cache = MelCache.open(default_cache_dir(tmp_path))
    assert cache.load("vibe").dtype == np.float16

    from_file = embed_audio(encoder, source)
    from_bytes = embed_audio(encoder, source.read_bytes(), name="upload")
    from_cache = predict_cached(encoder, cache, ["vibe"])[0]
    cached_vector = embed_cached(encoder, cache, ["vibe"])[0]
    with torch.no_grad():  # the cache's float32 mel, before float16 storage
        factors, content = encoder.embed_mel(torch.from_numpy(log_mel(source))[None])
    training = track_vector(encoder.dims, factors[0].numpy(), content[0].numpy())
    np.testing.assert_array_equal(from_bytes.vector, from_file.vector)
    assert from_file.factors.dtype == np.float32 and from_file.factors.shape == (8,)
    assert from_file.content.dtype == np.float32 and from_file.content.shape == (12,)
    np.testing.assert_array_equal(
        from_file.vector, np.concatenate([from_file.content, from_file.factors])
    )
    assert from_file.container == "mp3" and not from_file.truncated
    assert min(from_file.decode_ms, from_file.features_ms, from_file.model_ms) > 0
    # Same float32 numbers up to the order of float operations.
    np.testing.assert_allclose(training, from_file.vector, rtol=1e-4, atol=1e-4)
    # float16 keeps 11 significant bits of each log-mel (|x| < 16: error < 0.008); pooled
    # over a whole clip that moves each output by well under 0.2% of the vector's scale.
    for served, cached in ((from_file.factors, from_cache), (from_file.vector, cached_vector)):
        scale = float(np.abs(served).max())
        assert float(np.abs(cached - served).max()) <= 2e-3 * scale


def test_track_vector_round_trip(encoder: ContentEncoder) -> None:
    """The stored track vector splits back into the factors and the embedding, one row or
    many; an encoder without an embedding stores its factors alone."""
    rng = np.random.default_rng(0)
    factors, content = rng.normal(size=(5, 8)), rng.normal(size=(5, 12))
    rows = track_vector(encoder.dims, factors, content)
    assert rows.shape == (5, track_vector_dims(encoder.dims)) == (5, 20)
    assert rows.dtype == np.float32
    back_factors, back_content = split_track_vector(encoder.dims, rows)
    np.testing.assert_allclose(back_factors, factors, rtol=1e-6)
    np.testing.assert_allclose(split_track_vector(encoder.dims, rows[2])[1], content[2], rtol=1e-6)
    plain = encoder.with_content_dims(None).dims
    assert track_vector_dims(plain) == 8
    single = track_vector(plain, factors[0], factors[0])
    assert single.shape == (8,)
    assert all(part is single for part in split_track_vector(plain, single))


def test_refused_audio_raises_the_front_ends_error(encoder: ContentEncoder) -> None:
    """The front end's check runs on every path: silence and short clips never reach the model."""
    from tests.hostile_audio import tone, wav_bytes

    rate = encoder.config.sample_rate
    for samples, code in ((np.zeros(rate * 4), "silent"), (tone(1.0, rate), "too_short")):
        with pytest.raises(AudioError) as caught:
            embed_audio(encoder, wav_bytes(samples, rate), DecodeLimits(), name="clip.wav")
        assert caught.value.code == code and caught.value.source == "clip.wav"


def test_cached_songs_predict_in_any_batching(encoder: ContentEncoder, synthetic_world) -> None:
    """Zero-padded batches give each song the vector it gets alone; no songs, no rows."""
    song_ids = synthetic_world.song_ids[:7]
    batched = predict_cached(encoder, synthetic_world, song_ids, batch_size=4)
    alone = np.concatenate([predict_cached(encoder, synthetic_world, [s]) for s in song_ids])
    assert batched.shape == (7, 8) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)
    assert predict_cached(encoder, synthetic_world, []).shape == (0, 8)
    vectors = embed_cached(encoder, synthetic_world, song_ids, batch_size=4)
    assert vectors.shape == (7, 20) and vectors.dtype == np.float32
    np.testing.assert_allclose(split_track_vector(encoder.dims, vectors)[0], batched, rtol=1e-5)
    assert embed_cached(encoder, synthetic_world, []).shape == (0, 20)


def test_a_non_finite_prediction_is_refused(encoder: ContentEncoder) -> None:
    """Nothing non-finite leaves the path: a model whose output is NaN is "unembeddable"."""
    import copy

    from tests.hostile_audio import tone, wav_bytes

    broken = copy.deepcopy(encoder)
    with torch.no_grad():
        broken.head[-1].bias.fill_(float("nan"))
    rate = encoder.config.sample_rate
    with pytest.raises(AudioError) as caught:
        embed_audio(broken, wav_bytes(tone(4.0, rate), rate), name="clip.wav")
    assert caught.value.code == "unembeddable"


def test_coldstart_predict_loads_the_checkpoint_into_the_same_path(
    encoder: ContentEncoder, tmp_path: Path
) -> None:
    """`load_predictor` (what `coldstart predict` runs) gives `embed_audio`'s factors."""
    from tests.hostile_audio import tone, wav_bytes
    from training.checkpoint import save_encoder
    from training.inference import load_predictor

    save_encoder(encoder, tmp_path / "cnn")
    rate = encoder.config.sample_rate
    song = tmp_path / "song.wav"
    song.write_bytes(wav_bytes(tone(4.0, rate), rate))
    predicted = load_predictor(tmp_path / "cnn")(song)
    np.testing.assert_allclose(predicted, embed_audio(encoder, song).factors, rtol=1e-5, atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no model there"):
        load_predictor(tmp_path / "empty")
