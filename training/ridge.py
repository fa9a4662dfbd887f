"""The ridge head of the classical content models, and the artifact that holds each of them.

The `linear` bag of words (`training.baseline`) and the multiscale spherical k-means
features (`training.kmeans`) turn a clip's log-mel into a fixed feature vector by hand
(no gradient) and both end the same way, as van den Oord et al. (2013) and Dieleman &
Schrauwen (2013) do: a ridge regression from the features onto the WMF factors, its alpha
chosen by validation mAP (the CNN's early-stopping criterion). Both are saved without
pickle: `<name>.npz` (every array, the head's `coef` and `intercept` among them),
`<name>.json` (front end, parameters, alpha) and the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, overload

import numpy as np
from sklearn.linear_model import Ridge

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


@dataclass
class RidgeHead:
    """Features (N, D) -> factors (N, F): coef (F, D), intercept (F,), the alpha it kept."""

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (features @ self.coef.T + self.intercept).astype(np.float32)


def fit_ridge(
    train_features: np.ndarray,
    train_factors: np.ndarray,
    valid_features: np.ndarray,
    alphas: Sequence[float],
    score: Callable[[np.ndarray], float],
) -> tuple[RidgeHead, dict[float, float]]:
    """Ridge from (n_train, D) features to (n_train, F) factors for each alpha; keep the one
    whose (n_valid, F) predictions `score` best. Returns it and every alpha's score."""
    ridges = {alpha: Ridge(alpha=alpha).fit(train_features, train_factors) for alpha in alphas}
    scores = {
        alpha: score(ridge.predict(valid_features).astype(np.float32))
        for alpha, ridge in ridges.items()
    }
    best = max(scores, key=scores.__getitem__)
    head = RidgeHead(
        coef=ridges[best].coef_.astype(np.float32),
        intercept=np.asarray(ridges[best].intercept_, dtype=np.float32),
        alpha=float(best),
    )
    return head, scores


def save_classical(
    folder: Path,
    model: str,
    arrays: dict[str, np.ndarray],
    config: FrontEndConfig,
    params: dict[str, Any],
    head: RidgeHead,
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
    np.savez(folder / f"{model}.npz", **arrays, coef=head.coef, intercept=head.intercept)
    write_json_atomic(
        folder / f"{model}.json",
        {"front_end": config.to_dict(), "params": params, "alpha": head.alpha},
    )
    return write_manifest(
        folder,
        kind=MANIFEST_KIND,
        files=[f"{model}.npz", f"{model}.json", *extra_files],
        parameters={"model": model, **params, "alpha": head.alpha},
        parents=parents,
        dataset_fingerprint=dataset_fingerprint,
        extra=extra,
    )


def load_classical(
    folder: Path, model: str, config: FrontEndConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray], RidgeHead]:
    """Read what `save_classical` wrote: (saved params, the other arrays, the head).

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
    head = RidgeHead(arrays.pop("coef"), arrays.pop("intercept"), float(saved["alpha"]))
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
    head: RidgeHead

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
