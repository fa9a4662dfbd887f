"""Save and load a content encoder without pickle: the one loader for training, CLI and service.

A checkpoint folder holds
- `encoder.pt`: the state dict (tensors only), loaded with `torch.load(weights_only=True)`;
- `encoder.json`: the checkpoint format, the architecture's name (`training.encoders`),
  its front-end config and its dims;
- `manifest.json` (written last, see `artifacts.manifest`): sha256 of every file, parents.

Loading builds whatever architecture `encoder.json` names, behind the front end it was
saved with; an unknown name is refused (`ArtifactError` naming the available ones).
A caller that feeds it mels from a cache passes the cache's front end (`front_end=`), and a
checkpoint made behind another is refused, so a model never runs behind mel features it
was not trained on. Formats: 1 had no content embedding (it loads as an encoder whose
content embedding is its factors, which is what its versions indexed); 2 added it
(`EncoderDims.content_dims`, its projection in the state dict); 3 added the
architecture's name. Formats 1 and 2 are `dieleman`, the only architecture there was.
This module imports torch and the encoders only: the service loads models without
Lightning or implicit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artifacts.files import write_json_atomic
from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from audio.config import FrontEndConfig
from training.encoders import UnknownEncoderError, encoder_class
from training.encoders.base import ContentEncoder, EncoderDims

WEIGHTS_FILE = "encoder.pt"
CONFIG_FILE = "encoder.json"
CHECKPOINT_FORMAT = 3
# Format 1: no content embedding (the content space was the predicted factors).
_FACTORS_AS_CONTENT_FORMAT = 1
# Formats before the architecture was recorded: there was one, the first.
_BEFORE_ARCHITECTURES = (1, 2)
_FIRST_ARCHITECTURE = "dieleman"
MANIFEST_KIND = "content_model"


@dataclass(frozen=True)
class SavedEncoder:
    """What `encoder.json` says: the architecture, its front end and dims (no weights)."""

    architecture: str
    front_end: FrontEndConfig
    dims: EncoderDims


def save_encoder(
    encoder: ContentEncoder,
    folder: Path,
    *,
    parameters: dict[str, Any] | None = None,
    parents: dict[str, str] | None = None,
    dataset_fingerprint: str | None = None,
    extra_files: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `encoder.pt`, `encoder.json`, then the manifest over them and `extra_files`.

    `extra_files` are files the caller already wrote into `folder` (e.g. the model's
    `test_song_factors.npy`) that the manifest should cover. The manifest's `parameters`
    name the architecture. Returns the manifest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().clone() for name, tensor in encoder.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    write_json_atomic(
        folder / CONFIG_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "architecture": encoder.name,
            "front_end": encoder.config.to_dict(),
            "dims": encoder.dims.to_dict(),
        },
    )
    return write_manifest(
        folder,
        kind=MANIFEST_KIND,
        files=[WEIGHTS_FILE, CONFIG_FILE, *extra_files],
        parameters={"model": "cnn", **(parameters or {}), "architecture": encoder.name},
        parents=parents,
        dataset_fingerprint=dataset_fingerprint,
        extra=extra,
    )


def read_encoder_config(folder: Path) -> SavedEncoder:
    """Read `folder/encoder.json` (not the weights, not the manifest).

    Raises `ArtifactError` for an unreadable file, an unknown format or architecture, or
    dims the architecture does not have; `FrontEndMismatchError` for front-end fields
    this code does not know.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: unreadable ({error})") from error
    saved_format = saved.get("format")
    if saved_format not in (*_BEFORE_ARCHITECTURES, CHECKPOINT_FORMAT):
        raise ArtifactError(
            f"{path}: checkpoint format {saved_format!r}, expected one of"
            f" {', '.join(map(str, (*_BEFORE_ARCHITECTURES, CHECKPOINT_FORMAT)))}"
        )
    architecture = (
        _FIRST_ARCHITECTURE if saved_format in _BEFORE_ARCHITECTURES else saved["architecture"]
    )
    try:
        cls = encoder_class(architecture)
    except UnknownEncoderError as error:
        raise ArtifactError(f"{path}: {error}") from error
    dims = saved["dims"]
    if saved_format == _FACTORS_AS_CONTENT_FORMAT:
        dims = {**dims, "content_dims": None}
    try:
        sizes = cls.dims_type.from_dict(dims)
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{path}: {architecture} dims {dims}: {error}") from error
    return SavedEncoder(architecture, FrontEndConfig.from_dict(saved["front_end"]), sizes)


def load_encoder(
    folder: Path,
    front_end: FrontEndConfig | None = None,
    device: str | torch.device = "cpu",
) -> ContentEncoder:
    """Load the encoder saved in `folder`, in eval mode, behind the front end it was saved
    with; `front_end` (e.g. the mel cache's it will read) must then be that one.

    Raises `ArtifactError` for a missing, unfinished or altered checkpoint or one naming
    an unknown architecture, and `audio.config.FrontEndMismatchError` when `front_end`
    is given and differs from the saved one.
    """
    folder = Path(folder)
    read_manifest(folder, kind=MANIFEST_KIND)
    saved = read_encoder_config(folder)
    if front_end is not None:
        front_end.require_same(saved.front_end, what=f"encoder checkpoint {folder}")
    encoder = encoder_class(saved.architecture)(saved.dims, saved.front_end)
    state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    encoder.load_state_dict(state)
    return encoder.to(device).eval()
