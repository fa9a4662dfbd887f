"""The checkpoint reader on the musicnn wheel's real checkpoints, whole and damaged."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training.encoders.musicnn_weights import MODELS, WHEEL_NAME
from training.encoders.tf_checkpoint import (
    DTYPES,
    CheckpointFormatError,
    TensorEntry,
    read_checkpoint,
    read_index,
    read_tensor,
)


@pytest.fixture(scope="module")
def checkpoints(musicnn_cache: Path) -> dict[str, tuple[bytes, bytes]]:
    """Each model's (.index bytes, .data bytes), read from the wheel in the cache."""
    with zipfile.ZipFile(musicnn_cache / "wheels" / WHEEL_NAME) as archive:
        return {
            model: (
                archive.read(f"musicnn/{model}/.index"),
                archive.read(f"musicnn/{model}/.data-00000-of-00001"),
            )
            for model in MODELS
        }


def _reads_or_refuses(index: bytes, data: bytes) -> None:
    """A damaged checkpoint is refused with `CheckpointFormatError` (nothing else), or what
    it reads has the shape and dtype its index declares."""
    try:
        entries = read_index(index)
        tensors = read_checkpoint(index, data)
    except CheckpointFormatError:
        return
    for name, tensor in tensors.items():
        assert tensor.shape == entries[name].shape
        assert tensor.dtype == DTYPES[entries[name].dtype]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_tensor_has_the_shape_its_index_declares(
    checkpoints: dict[str, tuple[bytes, bytes]], model: str
) -> None:
    index, data = checkpoints[model]
    entries = read_index(index)
    tensors = read_checkpoint(index, data)
    assert len(entries) == 150  # 64 model tensors, Adam's two slots each, 2 beta powers
    assert sum(entry.size for entry in entries.values()) == len(data)  # every byte, once
    for name, tensor in tensors.items():
        assert tensor.shape == entries[name].shape
        assert tensor.nbytes == entries[name].size
        assert np.isfinite(tensor).all()
    model_tensors = {n: t for n, t in tensors.items() if "Adam" not in n and "power" not in n}
    assert len(model_tensors) == 64
    assert sum(t.size for t in model_tensors.values()) == 792_079
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)  # the 7 x 38 timbral filters
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["dense_1/kernel"].shape == (200, 50)


def test_a_truncated_index_is_refused_at_every_cut(
    checkpoints: dict[str, tuple[bytes, bytes]],
) -> None:
    index, data = checkpoints["MSD_musicnn"]
    for cut in range(0, len(index), 7):
        with pytest.raises(CheckpointFormatError):
            read_index(index[:cut])


def test_a_hostile_index_is_refused_with_a_clear_error(
    checkpoints: dict[str, tuple[bytes, bytes]],
) -> None:
    index, data = checkpoints["MSD_musicnn"]
    with pytest.raises(CheckpointFormatError, match="bad table magic"):
        read_index(index[:-8] + struct.pack("<Q", 0x0123456789ABCDEF))
    with pytest.raises(CheckpointFormatError, match="shorter than its footer"):
        read_index(b"\x00" * 20)
    # the index block is the last before the 48-byte footer; its trailer's first byte says
    # how it is compressed (0: not at all; 1: Snappy)
    damaged = bytearray(index)
    damaged[len(index) - 48 - 5] = 1
    with pytest.raises(CheckpointFormatError, match="compressed block"):
        read_index(bytes(damaged))
    rng = np.random.default_rng(0)
    for _ in range(300):  # random single-byte damage: refused or read as declared
        flipped = bytearray(index)
        flipped[rng.integers(len(index))] ^= int(rng.integers(1, 256))
        _reads_or_refuses(bytes(flipped), data)


def test_a_tensor_whose_bytes_disagree_with_its_shape_is_refused(
    checkpoints: dict[str, tuple[bytes, bytes]],
) -> None:
    index, data = checkpoints["MSD_musicnn"]
    entry = read_index(index)["dense/kernel"]
    short = TensorEntry(entry.name, entry.dtype, (1506, 201), 0, entry.offset, entry.size)
    with pytest.raises(CheckpointFormatError, match="dense/kernel.*expected"):
        read_tensor(short, data)
    with pytest.raises(CheckpointFormatError, match="past the data file"):
        read_tensor(entry, data[: entry.offset + entry.size - 1])
    string = TensorEntry(entry.name, 7, (2,), 0, 0, 8)  # DT_STRING
    with pytest.raises(CheckpointFormatError, match="dtype 7"):
        read_tensor(string, data)
    with pytest.raises(CheckpointFormatError, match="past the data file"):
        read_checkpoint(index, data[: len(data) // 2])
