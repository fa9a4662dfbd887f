"""Save and load a `ContentEncoder` without pickle: the one loader for training, CLI and service.

A checkpoint folder holds
- `encoder.pt`: the state dict (tensors only), loaded with `torch.load(weights_only=True)`;
- `encoder.json`: the checkpoint format, the front-end config and the `EncoderDims` the
  weights belong to;
- `manifest.json` (written last, see `artifacts.manifest`): sha256 of every file, parents.

Loading compares the saved front end with the one in use and refuses a different one, so
a model never runs behind mel features it was not trained on. Format 2 added the content
embedding (`EncoderDims.content_dims`, its projection in the state dict); a format-1
checkpoint loads as an encoder whose content embedding is its factors, which is what its
versions indexed. This module imports torch
and the encoder only: the service loads models without Lightning or implicit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from artifacts.files import write_json_atomic
from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from audio.config import FRONT_END, FrontEndConfig
from training.encoder import ContentEncoder, EncoderDims

WEIGHTS_FILE = "encoder.pt"
CONFIG_FILE = "encoder.json"
CHECKPOINT_FORMAT = 2
# Format 1: no content embedding (the content space was the predicted factors).
_FACTORS_AS_CONTENT_FORMAT = 1
MANIFEST_KIND = "content_model"


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
    `test_song_factors.npy`) that the manifest should cover. Returns the manifest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().clone() for name, tensor in encoder.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    write_json_atomic(
        folder / CONFIG_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "front_end": encoder.config.to_dict(),
            "dims": encoder.dims.to_dict(),
        },
    )
    return write_manifest(
        folder,
        kind=MANIFEST_KIND,
        files=[WEIGHTS_FILE, CONFIG_FILE, *extra_files],
        parameters={"model": "cnn", **(parameters or {})},
        parents=parents,
        dataset_fingerprint=dataset_fingerprint,
        extra=extra,
    )


def load_encoder(
    folder: Path, config: FrontEndConfig = FRONT_END, device: str | torch.device = "cpu"
) -> ContentEncoder:
    """Load the encoder saved in `folder`, in eval mode, for the front end `config`.

    Raises `ArtifactError` for a missing, unfinished or altered checkpoint and
    `audio.config.FrontEndMismatchError` when it was trained behind another front end.
    """
    folder = Path(folder)
    read_manifest(folder, kind=MANIFEST_KIND)
    try:
        saved = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{folder / CONFIG_FILE}: unreadable ({error})") from error
    saved_format = saved.get("format")
    if saved_format not in (_FACTORS_AS_CONTENT_FORMAT, CHECKPOINT_FORMAT):
        raise ArtifactError(
            f"{folder / CONFIG_FILE}: checkpoint format {saved_format!r}, expected"
            f" {_FACTORS_AS_CONTENT_FORMAT} or {CHECKPOINT_FORMAT}"
        )
    config.require_same(saved["front_end"], what=f"encoder checkpoint {folder}")
    dims = saved["dims"]
    if saved_format == _FACTORS_AS_CONTENT_FORMAT:
        dims = {**dims, "content_dims": None}
    encoder = ContentEncoder(EncoderDims.from_dict(dims), config)
    state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    encoder.load_state_dict(state)
    return encoder.to(device).eval()
