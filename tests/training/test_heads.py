"""The classical models' heads: ridge or MLP, chosen on validation, saved and read back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from artifacts.manifest import ArtifactError, write_manifest
from audio.config import FRONT_END
from training.ridge import (
    MANIFEST_KIND,
    MLPHead,
    MLPSettings,
    RidgeHead,
    fit_head,
    load_classical,
    save_classical,
)


def _problem(nonlinear: bool) -> tuple[np.ndarray, ...]:
    """Features (N, 6) and factors (N, 3): linear in the features, or their absolute value
    (which no linear map can fit, the mean of each being zero)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(900, 6)).astype(np.float32)
    mixing = rng.normal(size=(6, 3)).astype(np.float32)
    factors = (np.abs(features) if nonlinear else features) @ mixing
    return features[:700], factors[:700], features[700:], factors[700:]


def _negative_error(truth: np.ndarray) -> Callable[[np.ndarray], float]:
    """A validation score: higher is better, as the validation mAP."""
    return lambda predicted: -float(np.mean((predicted - truth) ** 2))


@pytest.mark.parametrize("nonlinear, kind", [(True, "mlp"), (False, "ridge")])
def test_the_head_that_scores_best_on_validation_is_kept(nonlinear: bool, kind: str) -> None:
    train, train_factors, valid, valid_factors = _problem(nonlinear)
    score = _negative_error(valid_factors)
    head, scores = fit_head(
        train, train_factors, valid, (0.1, 10.0), score, MLPSettings(alphas=(1.0,), hidden=32)
    )
    assert set(scores) == {"ridge alpha=0.1", "ridge alpha=10", "mlp alpha=1"}
    assert head.kind == kind and scores[head.label] == max(scores.values())
    assert score(head.predict(valid)) == pytest.approx(scores[head.label])
    assert head.predict(valid).shape == (200, 3) and head.predict(valid).dtype == np.float32


def test_without_mlp_alphas_only_ridges_are_tried() -> None:
    train, train_factors, valid, valid_factors = _problem(nonlinear=True)
    head, scores = fit_head(train, train_factors, valid, (1.0,), _negative_error(valid_factors))
    assert isinstance(head, RidgeHead) and list(scores) == ["ridge alpha=1"]


def test_an_mlp_head_saves_and_loads_with_the_same_predictions(tmp_path: Path) -> None:
    train, train_factors, valid, valid_factors = _problem(nonlinear=True)
    head, _ = fit_head(
        train, train_factors, valid, (), _negative_error(valid_factors), MLPSettings((1.0,), 16)
    )
    assert isinstance(head, MLPHead) and head.hidden_weight.shape == (16, 6)
    extra = {"codebook": np.arange(4, dtype=np.float32)}
    manifest = save_classical(tmp_path, "kmeans", extra, FRONT_END, {"k": 2}, head)
    assert manifest["parameters"]["head"] == "mlp"
    params, arrays, loaded = load_classical(tmp_path, "kmeans", FRONT_END)
    assert params == {"k": 2} and set(arrays) == {"codebook"}
    assert isinstance(loaded, MLPHead) and loaded.alpha == 1.0
    np.testing.assert_array_equal(loaded.predict(valid), head.predict(valid))


def test_a_model_saved_before_heads_had_kinds_reads_as_ridge(tmp_path: Path) -> None:
    ridge = RidgeHead(np.ones((3, 6), np.float32), np.zeros(3, np.float32), 10.0)
    save_classical(tmp_path, "linear", {}, FRONT_END, {}, ridge)
    saved = json.loads((tmp_path / "linear.json").read_text())

    def rewrite(config: dict) -> None:
        (tmp_path / "linear.json").write_text(json.dumps(config))
        write_manifest(tmp_path, kind=MANIFEST_KIND, files=["linear.npz", "linear.json"])

    del saved["head"]
    rewrite(saved)
    _, _, loaded = load_classical(tmp_path, "linear", FRONT_END)
    assert isinstance(loaded, RidgeHead) and loaded.alpha == 10.0
    rewrite({**saved, "head": "forest"})
    with pytest.raises(ArtifactError, match="unknown head 'forest'"):
        load_classical(tmp_path, "linear", FRONT_END)
