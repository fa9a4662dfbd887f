"""`student`: dieleman's network whose pooled features mimic the teacher's, the teacher's
tag layer over them; the distillation loss of the Lightning module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.teacher import use_teacher_cache
from training.encoders import build_encoder
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.encoders.musicnn_encoders import MusicnnMsdEncoder
from training.encoders.musicnn_weights import WHEEL_SHA256
from training.encoders.student import TEACHER, StudentDims, StudentEncoder
from training.lightning_module import ContentModel

SMALL = StudentDims(channels=(8, 8, 16), hidden=(8,), teacher_dims=12, n_factors=4)


def test_its_pooled_features_are_as_wide_as_the_teachers_and_it_costs_what_dieleman_does() -> None:
    student = StudentEncoder(StudentDims())
    dieleman = DielemanEncoder(DielemanDims())
    assert student.teacher == TEACHER == "musicnn-msd" and student.dims.pooled_dims == 200
    assert student.config == dieleman.config  # the default front end: no second mel
    extra = sum(p.numel() for p in student.parameters()) - sum(
        p.numel() for p in dieleman.parameters()
    )
    # one linear map to the teacher's width, the head then reads 200 features, not 384
    assert extra == 384 * 200 + 200 + (200 - 384) * 256
    assert student.tag_names == () and student.tags is None  # no weights read: no tags


def test_fresh_it_carries_the_teachers_tag_layer_untrained(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tags of the teacher's features through the student's tag layer are the teacher's."""
    use_teacher_cache(request, monkeypatch)
    student = build_encoder("student", n_factors=6)
    teacher = build_encoder("musicnn-msd", n_factors=6).eval()
    assert isinstance(student, StudentEncoder) and isinstance(teacher, MusicnnMsdEncoder)
    assert student.tag_names == teacher.tag_names and len(student.tag_names) == 50
    assert student.dims.wheel_sha256 == WHEEL_SHA256
    assert student.tags is not None and not any(p.requires_grad for p in student.tags.parameters())
    features = torch.randn(3, 200)
    with torch.no_grad():
        torch.testing.assert_close(
            student.tag_probabilities(features), teacher.tag_probabilities(features)
        )


def test_the_distillation_loss_is_the_mse_over_the_songs_the_teacher_heard() -> None:
    torch.manual_seed(0)
    student = StudentEncoder(SMALL)
    targets = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    targets[1] = np.nan  # the teacher could not hear song 1
    model = ContentModel(student, teacher_features=targets, distill_weight=0.5)
    pooled = torch.randn(4, 12)
    songs = torch.tensor([0, 1, 2, 0])
    expected = torch.nn.functional.mse_loss(pooled[[0, 2, 3]], torch.from_numpy(targets[[0, 2, 0]]))
    torch.testing.assert_close(model.distill_loss(pooled, songs), expected)
    assert float(model.distill_loss(pooled[[1]], songs[[1]])) == 0.0
    with pytest.raises(ValueError, match="width 12; the net pools 7"):
        ContentModel(StudentEncoder(StudentDims(teacher_dims=7)), teacher_features=targets)


def test_songs_without_factors_count_in_the_distillation_loss_only() -> None:
    """A song a student only distils on (NaN factors) leaves the factor MSE unchanged."""
    torch.manual_seed(0)
    student = StudentEncoder(SMALL).eval()
    targets = np.random.default_rng(1).normal(size=(2, 12)).astype(np.float32)
    model = ContentModel(student, teacher_features=targets, distill_weight=1.0)
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    mel = torch.randn(2, 128, student.dims.min_frames + 5)
    factors = torch.tensor([[1.0, 2.0, 3.0, 4.0], [float("nan")] * 4])
    songs = torch.tensor([0, 1])
    loss = model.training_step((mel, factors, songs), 0)
    pooled = student.pooled_mel(mel)
    factor_loss = torch.nn.functional.mse_loss(student.head(pooled[:1]), factors[:1])
    torch.testing.assert_close(loss, factor_loss + model.distill_loss(pooled, songs))


def test_a_training_step_pulls_the_pooled_features_towards_the_teachers() -> None:
    """The step's loss is the factor MSE plus the weight times the distillation MSE."""
    torch.manual_seed(0)
    student = StudentEncoder(SMALL).train()
    targets = np.random.default_rng(1).normal(size=(2, 12)).astype(np.float32)
    model = ContentModel(student, teacher_features=targets, distill_weight=2.0)
    mel = torch.randn(4, 128, student.dims.min_frames + 5)
    factors = torch.randn(4, 4)
    songs = torch.tensor([0, 1, 1, 0])
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    torch.manual_seed(3)
    loss = model.training_step((mel, factors, songs), 0)
    torch.manual_seed(3)
    pooled = student.pooled_mel(mel)
    factor_loss = torch.nn.functional.mse_loss(student.head(pooled), factors)
    torch.testing.assert_close(loss, factor_loss + 2.0 * model.distill_loss(pooled, songs))
