"""The heads of the classical content models, and the artifact that holds each of them.

The `linear` bag of words (`training.baseline`) and the multiscale spherical k-means
features (`training.kmeans`) turn a clip's log-mel into a fixed feature vector by hand
(no gradient) and both end the same way, as van den Oord et al. (2013) and Dieleman &
Schrauwen (2013) do: a head from the features onto the WMF factors, a ridge regression or
(k-means, as Dieleman & Schrauwen's paper) a one-hidden-layer MLP, the head and its alpha
chosen by validation mAP (the CNN's early-stopping criterion). Both are saved without
pickle: `<name>.npz` (every array, the head's among them), `<name>.json` (front end,
parameters, the head's kind and alpha) and the manifest.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, overload

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor

from artifacts.files import write_json_atomic
from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from audio.config import FRONT_END, FrontEndConfig

MANIFEST_KIND = "content_model"


class LazyMels(Sequence[np.ndarray]):
    """Songs' log-mels read on access, one at a time: `load(song_id)` returns a memmap, and
    each live memmap holds a file descriptor, so a list of 28k of them ran past the
    open-files limit (the scale rehearsal's first night with 38k songs with audio)."""

    def __init__(self, load: Callable[[str], np.ndarray], song_ids: Sequence[str]) -> None:
        self.load = load
        self.song_ids = song_ids

    def __len__(self) -> int:
        return len(self.song_ids)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> LazyMels: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | LazyMels:
        if isinstance(index, slice):
            return LazyMels(self.load, self.song_ids[index])
        return self.load(self.song_ids[index])


def head_label(kind: str, alpha: float) -> str:
    """How a head is named among the candidates a fit scored: "ridge alpha=100"."""
    return f"{kind} alpha={alpha:g}"


class _HeadKind:
    """What every head declares: its `kind`, the `array_names` it is saved as (in the order
    its constructor takes them), the `alpha` it kept, and so its `label`."""

    kind: ClassVar[str]
    array_names: ClassVar[tuple[str, ...]]
    alpha: float

    @property
    def label(self) -> str:
        return head_label(self.kind, self.alpha)


@dataclass
class RidgeHead(_HeadKind):
    """Features (N, D) -> factors (N, F): coef (F, D), intercept (F,), the alpha it kept."""

    kind: ClassVar[str] = "ridge"
    array_names: ClassVar[tuple[str, ...]] = ("coef", "intercept")

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (features @ self.coef.T + self.intercept).astype(np.float32)


@dataclass
class MLPHead(_HeadKind):
    """Features (N, D) -> ReLU(features @ hidden_weight.T + hidden_bias) (N, H) -> @ coef.T +
    intercept (N, F): hidden_weight (H, D), hidden_bias (H,), coef (F, H), intercept (F,),
    the L2 penalty (alpha) it kept."""

    kind: ClassVar[str] = "mlp"
    array_names: ClassVar[tuple[str, ...]] = ("hidden_weight", "hidden_bias", "coef", "intercept")

    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        hidden = np.maximum(features @ self.hidden_weight.T + self.hidden_bias, 0.0)
        return (hidden @ self.coef.T + self.intercept).astype(np.float32)


Head = RidgeHead | MLPHead
HEAD_KINDS: dict[str, type[RidgeHead] | type[MLPHead]] = {
    head.kind: head for head in (RidgeHead, MLPHead)
}


@dataclass(frozen=True)
class MLPSettings:
    """The MLP heads a fit tries: one per L2 penalty in `alphas` (none: ridge only), each
    with `hidden` ReLU units, trained by Adam for at most `max_iterations` epochs with
    scikit-learn's early stopping on a tenth of the training songs, seeded by `seed`."""

    alphas: tuple[float, ...] = ()
    hidden: int = 256
    max_iterations: int = 200
    seed: int = 0


def _mlp_head(regressor: MLPRegressor, alpha: float) -> MLPHead:
    hidden_weight, coef = regressor.coefs_
    hidden_bias, intercept = regressor.intercepts_
    return MLPHead(
        hidden_weight=np.ascontiguousarray(hidden_weight.T, dtype=np.float32),
        hidden_bias=hidden_bias.astype(np.float32),
        coef=np.ascontiguousarray(coef.T, dtype=np.float32),
        intercept=intercept.astype(np.float32),
        alpha=float(alpha),
    )


def fit_head(
    train_features: np.ndarray,
    train_factors: np.ndarray,
    valid_features: np.ndarray,
    alphas: Sequence[float],
    score: Callable[[np.ndarray], float],
    mlp: MLPSettings = MLPSettings(),
) -> tuple[Head, dict[str, float]]:
    """A ridge from (n_train, D) features to (n_train, F) factors for each of `alphas`, and
    an MLP for each of `mlp.alphas`; keep the head whose (n_valid, F) predictions `score`
    best. Returns it and every candidate's score by its label."""
    heads: list[Head] = []
    for alpha in alphas:
        ridge = Ridge(alpha=alpha).fit(train_features, train_factors)
        heads.append(
            RidgeHead(
                coef=ridge.coef_.astype(np.float32),
                intercept=np.asarray(ridge.intercept_, dtype=np.float32),
                alpha=float(alpha),
            )
        )
    for alpha in mlp.alphas:
        regressor = MLPRegressor(
            hidden_layer_sizes=(mlp.hidden,),
            alpha=alpha,
            max_iter=mlp.max_iterations,
            early_stopping=True,
            random_state=mlp.seed,
        )
        with warnings.catch_warnings():  # `max_iterations` bounds the fit on purpose
            warnings.simplefilter("ignore", ConvergenceWarning)
            regressor.fit(train_features, train_factors)
        heads.append(_mlp_head(regressor, alpha))
    scores = {head.label: score(head.predict(valid_features)) for head in heads}
    best = max(heads, key=lambda head: scores[head.label])
    return best, scores


def save_classical(
    folder: Path,
    model: str,
    arrays: dict[str, np.ndarray],
    config: FrontEndConfig,
    params: dict[str, Any],
    head: Head,
    *,
    parents: dict[str, str] | None = None,
    dataset_fingerprint: str | None = None,
    extra_files: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `<model>.npz` (`arrays` and the head), `<model>.json`, then the manifest (over
    `extra_files` too); return the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head_arrays = {name: getattr(head, name) for name in head.array_names}
    np.savez(folder / f"{model}.npz", **arrays, **head_arrays)
    write_json_atomic(
        folder / f"{model}.json",
        {"front_end": config.to_dict(), "params": params, "head": head.kind, "alpha": head.alpha},
    )
    return write_manifest(
        folder,
        kind=MANIFEST_KIND,
        files=[f"{model}.npz", f"{model}.json", *extra_files],
        parameters={"model": model, **params, "head": head.kind, "alpha": head.alpha},
        parents=parents,
        dataset_fingerprint=dataset_fingerprint,
        extra=extra,
    )


def load_classical(
    folder: Path, model: str, config: FrontEndConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray], Head]:
    """Read what `save_classical` wrote: (saved params, the other arrays, the head); one
    saved before heads had kinds holds a ridge.

    Raises `ArtifactError` for a missing or unreadable artifact and `FrontEndMismatchError`
    when it was made behind another front end than `config`."""
    folder = Path(folder)
    read_manifest(folder, kind=MANIFEST_KIND)
    try:
        saved = json.loads((folder / f"{model}.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{folder / f'{model}.json'}: unreadable ({error})") from error
    config.require_same(saved["front_end"], what=f"{model} model {folder}")
    with np.load(folder / f"{model}.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    kind = saved.get("head", RidgeHead.kind)
    if kind not in HEAD_KINDS:
        raise ArtifactError(f"{folder / f'{model}.json'}: unknown head {kind!r}")
    head_type = HEAD_KINDS[kind]
    head = head_type(
        *(arrays.pop(name) for name in head_type.array_names), alpha=float(saved["alpha"])
    )
    return saved["params"], arrays, head


class ClassicalModel:
    """What a classical model shares (a dataclass subclass declares the fields): its
    `params` (a dataclass of `params_type`, with `to_dict`/`from_dict`), the front end
    `config` its log-mels come from, the arrays named by `array_names`, and the `head`;
    saving and loading them as `<model_name>.npz` + `.json` + manifest."""

    model_name: ClassVar[str]
    params_type: ClassVar[Any]
    array_names: ClassVar[tuple[str, ...]]
    params: Any
    config: FrontEndConfig
    head: Head

    @property
    def alpha(self) -> float:
        return self.head.alpha

    def save(
        self,
        folder: Path,
        *,
        parents: dict[str, str] | None = None,
        dataset_fingerprint: str | None = None,
        extra_files: Sequence[str] = (),
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the arrays, the JSON, then the manifest (over `extra_files` too)."""
        return save_classical(
            folder,
            self.model_name,
            {name: getattr(self, name) for name in self.array_names},
            self.config,
            self.params.to_dict(),
            self.head,
            parents=parents,
            dataset_fingerprint=dataset_fingerprint,
            extra_files=extra_files,
            extra=extra,
        )

    @classmethod
    def load(cls, folder: Path, config: FrontEndConfig = FRONT_END) -> Self:
        """Load a saved model; refuses one made behind a different front end than `config`."""
        params, arrays, head = load_classical(folder, cls.model_name, config)
        fields = {"params": cls.params_type.from_dict(params), "config": config, "head": head}
        return cls(**fields, **arrays)
