"""`musicnn` and `musicnn-msd`: the teacher's features and tags inside the encoder, the frozen
backbone, the dims' checks and the tags of the embedding path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.teacher import use_teacher_cache
from training.encoders import build_encoder
from training.encoders.musicnn_encoders import MSD_WIDTHS, MusicnnMsdDims, MusicnnMsdEncoder
from training.encoders.musicnn_weights import WHEEL_SHA256, load_weights
from training.inference import TOP_TAGS, embed_audio, top_tags


@pytest.fixture
def msd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MusicnnMsdEncoder:
    use_teacher_cache(request, monkeypatch)
    torch.manual_seed(0)
    encoder = build_encoder("musicnn-msd", MusicnnMsdDims(hidden=(16,)), n_factors=6)
    assert isinstance(encoder, MusicnnMsdEncoder)
    return encoder.eval()


def test_frozen_it_hears_and_tags_as_the_teacher(msd: MusicnnMsdEncoder) -> None:
    """Its pooled features are MSD_musicnn's penultimate ones and its tags the teacher's 50,
    in the wheel's order; the wheel's sha256 is in its dims (saved in encoder.json)."""
    teacher = load_weights().network()
    assert msd.tag_names == teacher.tag_names and len(msd.tag_names) == 50
    assert msd.tag_names[:3] == ("rock", "pop", "alternative")
    assert msd.dims.wheel_sha256 == WHEEL_SHA256
    mel = torch.rand(2, 96, 300) * 3
    with torch.no_grad():
        pooled = msd.pooled_mel(mel)
        expected = teacher(mel)
        probabilities = msd.tag_probabilities(pooled)
    torch.testing.assert_close(pooled, expected.penultimate)
    assert probabilities.shape == (2, 50)
    torch.testing.assert_close(probabilities, torch.sigmoid(expected.logits))


def test_a_frozen_network_stays_as_trained_while_the_head_learns(
    msd: MusicnnMsdEncoder,
) -> None:
    msd.train()
    assert not msd.network.training and msd.head.training
    assert not any(p.requires_grad for p in msd.network.parameters())
    assert all(p.requires_grad for p in msd.head.parameters())


def test_fine_tuned_it_learns_everything_and_offers_no_tags(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_teacher_cache(request, monkeypatch)
    encoder = build_encoder("musicnn-msd", MusicnnMsdDims(frozen=False), n_factors=6).train()
    assert encoder.tag_names == () and encoder.network.training
    assert all(p.requires_grad for p in encoder.parameters())
    teacher = load_weights().network()
    torch.testing.assert_close(
        encoder.network.mid_end[0][0].weight, teacher.mid_end[0][0].weight
    )  # started from the teacher's weights


def test_the_dims_refuse_what_the_weights_cannot_be() -> None:
    with pytest.raises(ValueError, match="widths"):
        MusicnnMsdDims(width=1.0)
    with pytest.raises(ValueError, match="fine-tuned"):
        MusicnnMsdDims(frozen=False, tag_names=("rock",))
    assert (MusicnnMsdDims().width, MusicnnMsdDims().penultimate_units) == (
        MSD_WIDTHS[0],
        MSD_WIDTHS[2],
    )


def test_models_without_a_tag_head_have_no_tags() -> None:
    for name in ("dieleman", "musicnn"):
        encoder = build_encoder(name, n_factors=4)
        assert encoder.tag_names == ()
        assert encoder.tag_probabilities(torch.zeros(3, encoder.dims.pooled_dims)).shape == (3, 0)


def test_the_embedding_carries_the_top_tags(msd: MusicnnMsdEncoder, audio_assets: Path) -> None:
    embedding = embed_audio(msd, audio_assets / "vibe_ace.mp3")
    assert embedding.tags is not None and len(embedding.tags) == TOP_TAGS
    names = [name for name, _ in embedding.tags]
    probabilities = [p for _, p in embedding.tags]
    assert set(names) <= set(msd.tag_names)
    assert probabilities == sorted(probabilities, reverse=True)
    assert (
        embed_audio(
            build_encoder("dieleman", n_factors=4).eval(), audio_assets / "vibe_ace.mp3"
        ).tags
        is None
    )


def test_top_tags_orders_by_probability() -> None:
    names = ("a", "b", "c")
    assert top_tags(names, np.array([0.2, 0.9, 0.5]), k=2) == (("b", 0.9), ("c", 0.5))
    with pytest.raises(ValueError, match="3 tag names"):
        top_tags(names, np.zeros(4))
