"""The encoder's shapes and its masked global pooling."""

from __future__ import annotations

import json

import pytest
import torch

from audio.config import FRONT_END
from training.encoder import ClipTooShortError, ContentEncoder, EncoderDims


def test_shapes(encoder: ContentEncoder) -> None:
    with torch.no_grad():
        assert encoder.forward_mel(torch.randn(3, FRONT_END.n_mels, 130)).shape == (3, 8)
        assert encoder(torch.randn(2, FRONT_END.min_samples)).shape == (2, 8)
        assert encoder(torch.randn(FRONT_END.min_samples)).shape == (1, 8)


def test_min_frames_is_exact(encoder: ContentEncoder) -> None:
    shortest = encoder.dims.min_frames
    assert int(encoder.dims.frames_out(torch.tensor(shortest))) == 1
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


def test_dims_survive_json(encoder: ContentEncoder) -> None:
    dims = encoder.dims
    assert EncoderDims.from_dict(json.loads(json.dumps(dims.to_dict()))) == dims
    with pytest.raises(ValueError, match="poolings"):
        EncoderDims(channels=(8, 8), pools=(4, 2))
