"""`dieleman-msd`: the trained network's projection joined to the frozen teacher's features
of the clip, the teacher's tags, and a fit that never runs the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from tests.teacher import use_teacher_cache
from training.encoders import build_encoder
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.encoders.dieleman_msd import (
    DielemanMsdDims,
    DielemanMsdEncoder,
    joined_spaces,
)
from training.encoders.musicnn import MUSICNN_FRONT_END
from training.encoders.musicnn_weights import (
    CACHE_ENV,
    WHEEL_SHA256,
    MusicnnWeightsError,
    load_weights,
)
from training.inference import TOP_TAGS, embed_audio

PATCH = MUSICNN_FRONT_END.window_frames


@pytest.fixture
def both(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DielemanMsdEncoder:
    use_teacher_cache(request, monkeypatch)
    torch.manual_seed(0)
    encoder = build_encoder("dieleman-msd", DielemanMsdEncoder.small_dims, n_factors=6)
    assert isinstance(encoder, DielemanMsdEncoder)
    return encoder.eval()


def test_its_content_joins_its_projection_to_the_teachers_features(
    both: DielemanMsdEncoder,
) -> None:
    """Content = [unit projection of the trained network's pooled features, unit teacher
    features of each clip's real frames]; the tags are the teacher's; a padded row as alone."""
    teacher = load_weights().network()
    assert both.tag_names == teacher.tag_names and len(both.tag_names) == 50
    assert both.dims.wheel_sha256 == WHEEL_SHA256
    lengths = torch.tensor([PATCH, 3 * PATCH + 11])
    mel = torch.rand(2, 96, 3 * PATCH + 11) * 3
    with torch.no_grad():
        factors, content, tags = both.embed_tagged(mel, lengths)
        own = both.pooled_mel(mel, lengths) @ both.content_projection
        heard = [teacher(mel[:1, :, :PATCH]), teacher(mel[1:])]
    projected = both.dims.projected_dims
    assert content.shape == (2, both.dims.embedding_dims) == (2, projected + 200)
    torch.testing.assert_close(content[:, :projected], functional.normalize(own, dim=1))
    penultimate = torch.cat([h.penultimate for h in heard])
    torch.testing.assert_close(
        content[:, projected:], functional.normalize(penultimate, dim=1), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        tags, torch.sigmoid(torch.cat([h.logits for h in heard])), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(factors, both.forward_mel(mel, lengths))


def test_a_fit_never_runs_the_teacher_nor_changes_it(both: DielemanMsdEncoder) -> None:
    """What training calls (pooled features, the head) works without the teacher; the
    teacher stays frozen and in eval mode under `train()`."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the teacher ran")

    both.train()
    assert not both.teacher_network.training and both.convs.training
    assert not any(p.requires_grad for p in both.teacher_network.parameters())
    assert all(p.requires_grad for p in both.head.parameters())
    both.teacher_network.pool = refuse  # type: ignore[method-assign]
    mel = torch.rand(4, 96, PATCH)
    both.forward_mel(mel).sum().backward()
    with pytest.raises(AssertionError, match="the teacher ran"):
        both.embed_mel(mel)


def test_joined_spaces_weigh_each_part_alike() -> None:
    small, large = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 40).double() * 1e3
    joined = joined_spaces(small, large)

    def cosines(x: torch.Tensor) -> torch.Tensor:
        unit = functional.normalize(x, dim=1)
        return unit @ unit.T

    torch.testing.assert_close(cosines(joined), (cosines(small) + cosines(large)) / 2)


def test_the_dims_need_a_projection_and_a_whole_patch() -> None:
    with pytest.raises(ValueError, match="join a content embedding"):
        DielemanMsdDims(content_dims=None)
    with pytest.raises(ValueError, match="positive"):
        DielemanMsdDims(teacher_dims=0)
    assert DielemanMsdDims().min_frames == PATCH
    assert DielemanMsdDims(content_dims=64).embedding_dims == 64 + 200


def test_a_served_upload_carries_the_teachers_tags(
    both: DielemanMsdEncoder, audio_assets: Path
) -> None:
    embedding = embed_audio(both, audio_assets / "vibe_ace.mp3")
    assert embedding.tags is not None and len(embedding.tags) == TOP_TAGS
    assert {name for name, _ in embedding.tags} <= set(both.tag_names)
    assert embedding.content.shape == (both.dims.embedding_dims,)
    assert np.isclose(np.linalg.norm(embedding.content), np.sqrt(2), atol=1e-5)


def test_without_the_teachers_weights_it_says_what_to_run(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(MusicnnWeightsError, match="coldstart teacher fetch"):
        build_encoder("dieleman-msd")


def test_the_teacher_leaves_the_seeded_generator_as_dieleman_does(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, same trained network and the same draws after it: a fit of either
    shuffles and drops out alike (the teacher's weights are loaded, not drawn)."""
    use_teacher_cache(request, monkeypatch)
    dims = DielemanMsdEncoder.small_dims
    torch.manual_seed(3)
    both = build_encoder("dieleman-msd", dims, n_factors=6)
    after_both = torch.rand(3)
    torch.manual_seed(3)
    alone = DielemanEncoder(
        DielemanDims(channels=dims.channels, hidden=dims.hidden, n_factors=6), MUSICNN_FRONT_END
    )
    after_alone = torch.rand(3)
    torch.testing.assert_close(after_both, after_alone)
    torch.testing.assert_close(both.convs[0].weight, alone.convs[0].weight)
