"""The encoder's shapes, its masked global pooling, and training/serving parity on real audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audio.config import FRONT_END
from training.encoder import ClipTooShortError, ContentEncoder, EncoderDims

DIMS = EncoderDims(n_factors=8, channels=(16, 16, 32), hidden=(32,))


@pytest.fixture(scope="module")
def encoder() -> ContentEncoder:
    torch.manual_seed(0)
    net = ContentEncoder(DIMS)
    # Fresh batch norms are identities; give them statistics so the test means something.
    net.train()
    with torch.no_grad():
        net.forward_mel(torch.randn(8, FRONT_END.n_mels, 200) * 3 - 5)
    return net.eval()


def test_shapes(encoder: ContentEncoder) -> None:
    with torch.no_grad():
        assert encoder.forward_mel(torch.randn(3, FRONT_END.n_mels, 130)).shape == (3, 8)
        assert encoder(torch.randn(2, FRONT_END.min_samples)).shape == (2, 8)
        assert encoder(torch.randn(FRONT_END.min_samples)).shape == (1, 8)


def test_min_frames_is_exact(encoder: ContentEncoder) -> None:
    shortest = DIMS.min_frames
    assert int(DIMS.frames_out(torch.tensor(shortest))) == 1
    with torch.no_grad():
        encoder.forward_mel(torch.randn(1, FRONT_END.n_mels, shortest))
        with pytest.raises(ClipTooShortError, match=str(shortest)):
            encoder.forward_mel(torch.randn(1, FRONT_END.n_mels, shortest - 1))


def test_padded_mel_batch_equals_one_by_one(encoder: ContentEncoder) -> None:
    generator = torch.Generator().manual_seed(1)
    mels = [torch.randn(FRONT_END.n_mels, n, generator=generator) for n in (130, 47, 301, 517)]
    lengths = torch.tensor([mel.shape[1] for mel in mels])
    padded = torch.zeros(len(mels), FRONT_END.n_mels, int(lengths.max()))
    for row, mel in enumerate(mels):
        padded[row, :, : mel.shape[1]] = mel
    padded[0, :, 130:] = 1e4  # whatever fills the padding must not leak in
    with torch.no_grad():
        batched = encoder.forward_mel(padded, lengths)
        alone = torch.cat([encoder.forward_mel(mel[None]) for mel in mels])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_padded_waveform_batch_equals_one_by_one(encoder: ContentEncoder) -> None:
    generator = torch.Generator().manual_seed(2)
    clips = [0.1 * torch.randn(n, generator=generator) for n in (66150, 90001, 140000)]
    lengths = torch.tensor([clip.numel() for clip in clips])
    padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    with torch.no_grad():
        batched = encoder(padded, lengths)
        alone = torch.cat([encoder(clip) for clip in clips])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_dims_survive_json() -> None:
    assert EncoderDims.from_dict(json.loads(json.dumps(DIMS.to_dict()))) == DIMS
    with pytest.raises(ValueError, match="poolings"):
        EncoderDims(channels=(8, 8), pools=(4, 2))


def test_training_and_serving_paths_agree(
    encoder: ContentEncoder, audio_assets: Path, tmp_path: Path
) -> None:
    """Training reads the float16 mel cache, serving decodes and runs the encoder's own LogMel."""
    from audio.cache import MelCache, default_cache_dir, featurize_dataset
    from audio.decode import decode_audio
    from audio.frontend import log_mel

    source = audio_assets / "vibe_ace.mp3"
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "vibe.mp3").symlink_to(source)
    featurize_dataset(tmp_path, workers=1, progress=False)
    cached = MelCache.open(default_cache_dir(tmp_path)).load("vibe")
    assert cached.dtype == np.float16
    with torch.no_grad():
        serving = encoder(torch.from_numpy(decode_audio(source).samples))
        training = encoder.forward_mel(torch.from_numpy(log_mel(source))[None])
        from_cache = encoder.forward_mel(torch.from_numpy(np.asarray(cached, np.float32))[None])
    # Same float32 numbers up to the order of float operations.
    torch.testing.assert_close(training, serving, rtol=1e-4, atol=1e-4)
    # float16 keeps 11 significant bits of each log-mel (|x| < 16: error < 0.008); pooled
    # over a whole clip that moves each factor by well under 0.2% of the vector's scale.
    scale = float(training.abs().max())
    assert float((from_cache - training).abs().max()) <= 2e-3 * scale
