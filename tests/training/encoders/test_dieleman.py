"""The encoder's shapes, its masked global pooling and its two outputs."""

from __future__ import annotations

import json

import pytest
import torch

from audio.config import FRONT_END
from training.encoders.base import ClipTooShortError, ContentEncoder
from training.encoders.dieleman import DielemanDims


def test_shapes(encoder: ContentEncoder) -> None:
    with torch.no_grad():
        assert encoder.forward_mel(torch.randn(3, FRONT_END.n_mels, 130)).shape == (3, 8)
        assert encoder(torch.randn(2, FRONT_END.min_samples)).shape == (2, 8)
        assert encoder(torch.randn(FRONT_END.min_samples)).shape == (1, 8)


def test_one_pass_gives_the_factors_and_the_content_embedding(encoder: ContentEncoder) -> None:
    """`embed_mel`'s factors are `forward_mel`'s; its content embedding is the fitted
    projection of the pooled features, `content_dims` wide."""
    mel = torch.randn(3, FRONT_END.n_mels, 150)
    with torch.no_grad():
        factors, content = encoder.embed_mel(mel)
        pooled = encoder.pooled_mel(mel)
        torch.testing.assert_close(factors, encoder.forward_mel(mel))
        torch.testing.assert_close(factors, encoder.head(pooled))
    assert pooled.shape == (3, encoder.dims.pooled_dims) == (3, 96)
    assert content.shape == (3, encoder.dims.embedding_dims) == (3, 12)
    torch.testing.assert_close(content, pooled @ encoder.content_projection)


def test_content_dims_none_makes_the_factors_the_embedding(encoder: ContentEncoder) -> None:
    """An encoder without its own embedding (as saved before it existed) embeds by its
    factors, with the same weights; `content_dims` wider than the pool is the whole pool."""
    plain = encoder.with_content_dims(None)
    mel = torch.randn(2, FRONT_END.n_mels, 150)
    with torch.no_grad():
        factors, content = plain.embed_mel(mel)
        torch.testing.assert_close(factors, encoder.forward_mel(mel))
    assert content is factors and plain.dims.embedding_dims == 8
    assert "content_projection" not in plain.state_dict()
    assert DielemanDims(channels=(8, 8, 16), content_dims=500).embedding_dims == 48
    with pytest.raises(ValueError, match="no projection"):
        plain.set_content_projection(torch.zeros(96, 8))
    with pytest.raises(ValueError, match="shape"):
        encoder.with_content_dims(5).set_content_projection(torch.zeros(96, 4))


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
    assert DielemanDims.from_dict(json.loads(json.dumps(dims.to_dict()))) == dims
    with pytest.raises(ValueError, match="poolings"):
        DielemanDims(channels=(8, 8), pools=(4, 2))
