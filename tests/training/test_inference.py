"""The one embedding path: a file, its bytes and its cached mel give the same vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio.decode import DecodeLimits
from audio.errors import AudioError
from training.encoder import ContentEncoder
from training.inference import embed_audio, predict_cached


def test_training_and_serving_paths_agree(
    encoder: ContentEncoder, shared_audio_dir: Path, tmp_path: Path
) -> None:
    """Training reads the float16 mel cache, serving decodes and runs the encoder's own LogMel:
    both through `training.inference`."""
    from audio.cache import MelCache, default_cache_dir, featurize_dataset
    from audio.frontend import log_mel

    source = shared_audio_dir / "vibe_ace.mp3"
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "vibe.mp3").symlink_to(source)
    featurize_dataset(tmp_path, workers=1, progress=False)
    cache = MelCache.open(default_cache_dir(tmp_path))
    assert cache.load("vibe").dtype == np.float16

    from_file = embed_audio(encoder, source)
    from_bytes = embed_audio(encoder, source.read_bytes(), name="upload")
    from_cache = predict_cached(encoder, cache, ["vibe"])[0]
    with torch.no_grad():  # the cache's float32 mel, before float16 storage
        training = encoder.forward_mel(torch.from_numpy(log_mel(source))[None])[0].numpy()
    np.testing.assert_array_equal(from_bytes.vector, from_file.vector)
    assert from_file.vector.dtype == np.float32 and from_file.vector.shape == (8,)
    assert from_file.container == "mp3" and not from_file.truncated
    assert min(from_file.decode_ms, from_file.features_ms, from_file.model_ms) > 0
    # Same float32 numbers up to the order of float operations.
    np.testing.assert_allclose(training, from_file.vector, rtol=1e-4, atol=1e-4)
    # float16 keeps 11 significant bits of each log-mel (|x| < 16: error < 0.008); pooled
    # over a whole clip that moves each factor by well under 0.2% of the vector's scale.
    scale = float(np.abs(training).max())
    assert float(np.abs(from_cache - training).max()) <= 2e-3 * scale


def test_refused_audio_raises_the_front_ends_error(encoder: ContentEncoder) -> None:
    """The front end's check runs on every path: silence and short clips never reach the model."""
    rate = encoder.config.sample_rate
    silence = np.zeros(rate * 4, np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    for samples, code in ((silence, "silent"), (tone, "too_short")):
        with pytest.raises(AudioError) as caught:
            embed_audio(encoder, _wav_bytes(samples, rate), DecodeLimits(), name="clip.wav")
        assert caught.value.code == code and caught.value.source == "clip.wav"


def test_cached_songs_predict_in_any_batching(encoder: ContentEncoder, synthetic_world) -> None:
    """Zero-padded batches give each song the vector it gets alone; no songs, no rows."""
    song_ids = synthetic_world.song_ids[:7]
    batched = predict_cached(encoder, synthetic_world, song_ids, batch_size=4)
    alone = np.concatenate([predict_cached(encoder, synthetic_world, [s]) for s in song_ids])
    assert batched.shape == (7, 8) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)
    assert predict_cached(encoder, synthetic_world, []).shape == (0, 8)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        pcm = np.round(samples * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()
