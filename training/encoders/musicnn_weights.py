"""Pons' trained musicnn weights: PyPI's `musicnn==0.1.0` wheel -> PyTorch, cached once.

The wheel (ISC licence) carries TensorFlow checkpoints of `MSD_musicnn` (Million Song
Dataset, top 50 Last.fm tags) and `MTT_musicnn` (MagnaTagATune, 50 tags). Its declared
dependencies (numpy<1.17, tensorflow>=1.14) cannot live beside ours, so it is never
installed: `fetch_weights` downloads the file (pinned URL, sha256 checked), reads both
checkpoints with `training.encoders.tf_checkpoint` (no TensorFlow), maps them onto
`training.encoders.musicnn.Musicnn`, and writes

    CACHE/wheels/musicnn-0.1.0-py3-none-any.whl          the wheel as downloaded (29 MB)
    CACHE/musicnn-0.1.0/MSD_musicnn.pt, MTT_musicnn.pt   state dicts (torch.save of tensors)
    CACHE/musicnn-0.1.0/manifest.json                    their sha256, the wheel's URL and
                                                         sha256, each model's tag names

outside the repository (CACHE: `$COLDSTART_CACHE`, else `$XDG_CACHE_HOME/coldstart`, else
`~/.cache/coldstart`). `load_weights` reads them back with `weights_only=True`, files checked
against the manifest. `coldstart teacher fetch` (`make teacher`) fetches ahead of time; a
machine without the network takes `--wheel FILE`, a copy of the wheel.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from artifacts.files import file_lock, write_atomic
from artifacts.manifest import ArtifactError, read_manifest, sha256_file, write_manifest
from training.encoders.base import EncoderWeightsError
from training.encoders.musicnn import MID_END_LAYERS, TEMPORAL_FRAMES, TIMBRAL_BANDS, Musicnn
from training.encoders.tf_checkpoint import CheckpointFormatError, read_checkpoint

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_URL = (
    "https://files.pythonhosted.org/packages/1b/6f/"
    "38229e7d99c438e11114bbfa39c8c39185458c398011d0b6d7d7c7401617/" + WHEEL_NAME
)
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
WHEEL_SOURCE = {"url": WHEEL_URL, "wheel": WHEEL_NAME, "wheel_sha256": WHEEL_SHA256}
MODELS = {"MSD_musicnn": "MSD_LABELS", "MTT_musicnn": "MTT_LABELS"}  # model -> its tag list
WEIGHTS_KIND = "musicnn-weights"
FOLDER_NAME = "musicnn-0.1.0"
CACHE_ENV = "COLDSTART_CACHE"
FETCH_COMMAND = "coldstart teacher fetch"
_DOWNLOAD_CHUNK = 1 << 20
_NORM_PARTS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


class MusicnnWeightsError(EncoderWeightsError):
    """The weights are missing and cannot be fetched, or the wheel is not the one pinned;
    the message says what to run."""


@dataclass(frozen=True)
class MusicnnWeights:
    """One model's weights: `state_dict` loads into `Musicnn(tag_names)`; `source` names
    where they came from (URL, wheel sha256, model) for the manifest of a model built on
    them."""

    model: str
    state_dict: dict[str, Tensor]
    tag_names: tuple[str, ...]
    source: dict[str, str]

    def network(self) -> Musicnn:
        """A `Musicnn` holding these weights, in eval mode."""
        network = Musicnn(self.tag_names)
        network.load_network_weights(self.state_dict)
        return network.eval()


def cache_root() -> Path:
    """`$COLDSTART_CACHE`, else `$XDG_CACHE_HOME/coldstart`, else `~/.cache/coldstart`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "coldstart"


def tensorflow_to_torch(tensors: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """The wheel's checkpoint tensors (TensorFlow names, Adam's slots included) ->
    `Musicnn`'s state dict. TensorFlow numbers its layers in the order `build_musicnn`
    creates them; its kernels are (time, frequency, in, out), its dense (in, out)."""

    def tensor(layer: str, index: int, part: str) -> Tensor:
        return torch.from_numpy(tensors[f"{layer}_{index}/{part}" if index else f"{layer}/{part}"])

    def norm(prefix: str, index: int) -> dict[str, Tensor]:
        state = {
            f"{prefix}.{ours}": tensor("batch_normalization", index, theirs)
            for ours, theirs in _NORM_PARTS.items()
        }
        return {**state, f"{prefix}.num_batches_tracked": torch.tensor(0)}

    state = norm("input_norm", 0)
    blocks = [f"timbral.{i}" for i in range(len(TIMBRAL_BANDS))]
    blocks += [f"temporal.{i}" for i in range(len(TEMPORAL_FRAMES))]
    blocks += [f"mid_end.{i}" for i in range(MID_END_LAYERS)]
    for index, block in enumerate(blocks):
        kernel = tensor("conv2d", index, "kernel")
        if block.startswith("mid_end"):  # (7, width, 1, 64): 1-D over time
            state[f"{block}.0.weight"] = kernel[:, :, 0, :].permute(2, 1, 0)
        else:
            state[f"{block}.0.weight"] = kernel.permute(3, 2, 0, 1)
        state[f"{block}.0.bias"] = tensor("conv2d", index, "bias")
        state.update(norm(f"{block}.2", index + 1))
    state.update(norm("pooled_norm", len(blocks) + 1))
    state["penultimate.1.weight"] = tensor("dense", 0, "kernel").T
    state["penultimate.1.bias"] = tensor("dense", 0, "bias")
    state.update(norm("penultimate.3", len(blocks) + 2))
    state["tags.1.weight"] = tensor("dense", 1, "kernel").T
    state["tags.1.bias"] = tensor("dense", 1, "bias")
    return {name: value.contiguous() for name, value in state.items()}


def tag_names(configuration: str, variable: str) -> tuple[str, ...]:
    """The list assigned to `variable` in the wheel's `configuration.py` source, read with
    `ast.literal_eval` (never executed)."""
    for node in ast.parse(configuration).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == variable for target in node.targets
        ):
            names = ast.literal_eval(node.value)
            if isinstance(names, list) and all(isinstance(name, str) for name in names):
                return tuple(names)
    raise MusicnnWeightsError(f"the wheel's configuration.py assigns no list {variable}")


def _convert_wheel(wheel: Path, folder: Path) -> dict[str, Any]:
    """Write each model's state dict into `folder`; return the manifest's parameters."""
    tags: dict[str, list[str]] = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            configuration = archive.read("musicnn/configuration.py").decode()
            for model, variable in MODELS.items():
                tensors = read_checkpoint(
                    archive.read(f"musicnn/{model}/.index"),
                    archive.read(f"musicnn/{model}/.data-00000-of-00001"),
                )
                names = tag_names(configuration, variable)
                network = Musicnn(names)
                network.load_network_weights(tensorflow_to_torch(tensors))  # every weight
                buffer = io.BytesIO()
                torch.save(network.network_weights(), buffer)
                (folder / f"{model}.pt").write_bytes(buffer.getvalue())
                tags[model] = list(names)
    except (zipfile.BadZipFile, KeyError, CheckpointFormatError) as error:
        raise MusicnnWeightsError(f"{wheel}: not the musicnn wheel expected ({error})") from error
    return {**WHEEL_SOURCE, "tags": tags}


def _download(handle: IO[bytes], timeout: float) -> None:
    """Stream the pinned wheel into `handle`, refusing it unless its sha256 is the pinned
    one; a fresh opener, so the proxy settings of the environment at this call apply."""
    digest = hashlib.sha256()
    try:
        with urllib.request.build_opener().open(WHEEL_URL, timeout=timeout) as response:
            while block := response.read(_DOWNLOAD_CHUNK):
                digest.update(block)
                handle.write(block)
    except (urllib.error.URLError, OSError) as error:
        raise MusicnnWeightsError(
            f"cannot download the musicnn weights from {WHEEL_URL} "
            f"({getattr(error, 'reason', error)}). Run `{FETCH_COMMAND}` where PyPI is "
            f"reachable, or `{FETCH_COMMAND} --wheel FILE` with a copy of {WHEEL_NAME}"
        ) from error
    if digest.hexdigest() != WHEEL_SHA256:
        raise MusicnnWeightsError(
            f"{WHEEL_URL} gave sha256 {digest.hexdigest()}, expected {WHEEL_SHA256}"
        )


def fetch_wheel(
    root: Path | None = None, copy_of: Path | None = None, timeout: float = 60.0
) -> Path:
    """The pinned wheel in `root/wheels/` (default root: `cache_root()`), downloaded when
    missing, or copied from `copy_of`; sha256 checked either way. Raises
    `MusicnnWeightsError`."""
    wheel = (root or cache_root()) / "wheels" / WHEEL_NAME
    if wheel.is_file() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    if copy_of is None:
        write_atomic(wheel, lambda handle: _download(handle, timeout), sync=False)
        return wheel
    if not copy_of.is_file():
        raise MusicnnWeightsError(f"{copy_of}: no such file (a copy of {WHEEL_NAME})")
    sha256 = sha256_file(copy_of)
    if sha256 != WHEEL_SHA256:
        raise MusicnnWeightsError(
            f"{copy_of}: sha256 {sha256}, expected {WHEEL_SHA256} ({WHEEL_NAME} from PyPI)"
        )
    with open(copy_of, "rb") as source:
        write_atomic(wheel, lambda handle: shutil.copyfileobj(source, handle), sync=False)
    return wheel


def _complete(folder: Path) -> bool:
    try:
        read_manifest(folder, WEIGHTS_KIND)
    except ArtifactError:
        return False
    return True


def fetch_weights(
    root: Path | None = None, copy_of: Path | None = None, timeout: float = 60.0
) -> Path:
    """Make sure the converted weights are in `root/musicnn-0.1.0/` (default root:
    `cache_root()`); return that folder.

    Takes the wheel from `fetch_wheel` (downloaded, or copied from `copy_of`), converts both
    models and writes the manifest last. Does nothing when a complete folder is there;
    remakes an unfinished or damaged one. Raises `MusicnnWeightsError`.
    """
    root = root or cache_root()
    folder = root / FOLDER_NAME
    if _complete(folder):  # renamed into place whole: no lock needed to read it
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{FOLDER_NAME}.lock"):
        if _complete(folder):  # another process made it meanwhile
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        wheel = fetch_wheel(root, copy_of, timeout)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{FOLDER_NAME}.") as staging:
            out = Path(staging) / FOLDER_NAME
            out.mkdir()
            parameters = _convert_wheel(wheel, out)
            write_manifest(out, WEIGHTS_KIND, [f"{model}.pt" for model in MODELS], parameters)
            os.replace(out, folder)
    return folder


def load_weights(
    model: str = "MSD_musicnn", root: Path | None = None, fetch: bool = True
) -> MusicnnWeights:
    """One model's converted weights from the cache (default root: `cache_root()`),
    fetched first when missing and `fetch`.

    Raises `MusicnnWeightsError`, naming `coldstart teacher fetch`, when they are missing
    (or differ from their manifest) and cannot be fetched.
    """
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; known: {sorted(MODELS)}")
    folder = fetch_weights(root) if fetch else (root or cache_root()) / FOLDER_NAME
    try:
        manifest = read_manifest(folder, WEIGHTS_KIND)
    except ArtifactError as error:
        raise MusicnnWeightsError(
            f"no musicnn weights in {folder} ({error}): run `{FETCH_COMMAND}` (or `make teacher`)"
        ) from error
    state_dict = torch.load(folder / f"{model}.pt", weights_only=True)
    return MusicnnWeights(
        model=model,
        state_dict=state_dict,
        tag_names=tuple(manifest["parameters"]["tags"][model]),
        source={**WHEEL_SOURCE, "model": model},
    )
