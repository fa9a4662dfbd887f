"""The one embedding path: audio or cached log-mels -> a trained model's factor vectors and
content embeddings.

Every caller that turns audio into vectors comes here: the service (an upload's bytes, a
stored track's file), `coldstart predict` (files), the registry's publish step and the
quality gate (songs of the mel cache). For audio the path is
`audio.frontend.read_model_input` (decode, the front end's check, the front end module of
the encoder's config: the numbers its own `ContentEncoder.front_end` computes) ->
`embed_model_input` (`ContentEncoder.embed_tagged`; the service runs the first half in a
decode worker process, `service.decode_pool`); for the cache, the stored float16 model
input of `coldstart featurize` for that front end -> `embed_mel` (`forward_mel` where only
the factors are wanted), whole clips zero-padded into batches with their lengths (the
encoder masks the padding). The two agree to float16 precision for every architecture
(tests/training/test_inference.py, tests/training/encoders/test_every_encoder.py).

A track's two vectors travel as one (`track_vector`): the catalogue stores it per model
version, and the cf placement (the factors) and the content space (the embedding) are
both read back from it (`split_track_vector`).

Lightning-free (torch and the plain encoder only): the service imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from artifacts.manifest import ArtifactError
from audio.config import FRONT_END, FrontEndConfig
from audio.decode import CONTAINER_EXTENSIONS, DEFAULT_LIMITS, DecodeLimits, source_name
from audio.errors import AudioError
from audio.frontend import DecodeFacts, ModelInput, check_finite, log_mel, read_model_input
from training.checkpoint import CONFIG_FILE as ENCODER_CONFIG_FILE
from training.checkpoint import load_encoder
from training.encoders.base import ClipTooShortError, ContentEncoder, EncoderDims

# Tags an embedding reports (`Embedding.tags`), the most probable first.
TOP_TAGS = 5


class MelSource(Protocol):
    """What the loaders read: `audio.cache.MelCache`, or any store of log-mels by song id."""

    def n_frames(self, song_id: str) -> int: ...

    def load(self, song_id: str) -> np.ndarray:
        """The song's log-mel (n_mels, n_frames), float16 or float32, possibly a memmap."""
        ...


def track_vector_dims(dims: EncoderDims) -> int:
    """Length of a track's stored vector under an encoder of `dims` (see `track_vector`)."""
    if dims.content_dims is None:
        return dims.n_factors
    return dims.embedding_dims + dims.n_factors


def track_vector(dims: EncoderDims, factors: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The one vector kept for a track: its content embedding then its factors,
    (..., embedding_dims + n_factors) float32 (one track, or one row per track); the factors
    alone (..., n_factors) for an encoder whose content embedding is its factors."""
    if dims.content_dims is None:
        return np.asarray(factors, np.float32)
    return np.concatenate([content, factors], axis=-1).astype(np.float32)


def split_track_vector(dims: EncoderDims, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `track_vector`: (factors (..., n_factors), content (..., embedding_dims))."""
    if dims.content_dims is None:
        return vector, vector
    return vector[..., dims.embedding_dims :], vector[..., : dims.embedding_dims]


@dataclass(frozen=True)
class Embedding(DecodeFacts):
    """`factors` (n_factors,) and `content` (the encoder's `embedding_dims`,) float32,
    finite, and `vector`, the two as the catalogue stores them (`track_vector`); the
    `DecodeFacts` of the recording (`truncated`: the input was longer than the decode
    limit; `normalised`: it peaked at `peak_dbfs`, above full scale, and was scaled down to
    it; `container`, one of `audio.decode.ALLOWED_FORMATS`); the model's wall-clock
    milliseconds; `tags`, for an encoder with a tag head, its `TOP_TAGS` most probable
    tags with their probabilities (None without one)."""

    factors: np.ndarray
    content: np.ndarray
    vector: np.ndarray
    model_ms: float
    tags: tuple[tuple[str, float], ...] | None = None

    @property
    def extension(self) -> str:
        """The file extension its container is filed under (`CONTAINER_EXTENSIONS`)."""
        return CONTAINER_EXTENSIONS[self.container]


def embed_audio(
    encoder: ContentEncoder,
    source: bytes | str | Path,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> Embedding:
    """Predict the factors and content embedding of one recording (a file path or a file's
    bytes) from the whole clip; `AudioError` if the front end refuses it or a vector is not
    finite ("unembeddable"). `name` labels errors.

    Runs on the calling thread with torch's current thread count: the service calls it
    from its worker threads, never on the event loop.
    """
    label = source_name(source, name)
    return embed_model_input(
        encoder, read_model_input(source, encoder.config, limits, label), label
    )


def embed_model_input(encoder: ContentEncoder, audio: ModelInput, name: str) -> Embedding:
    """The `Embedding` of one recording's model input (`audio.frontend.read_model_input`
    behind `encoder.config`, here or in a decode worker process); `AudioError` "too_short"
    below the encoder's shortest input, "unembeddable" for a vector that is not finite."""
    started = time.perf_counter()
    with torch.inference_mode():
        try:
            factors, content, tags = (
                row[0].numpy().astype(np.float32)
                for row in encoder.embed_tagged(torch.from_numpy(audio.values)[None])
            )
        except ClipTooShortError as error:
            raise AudioError("too_short", name, str(error)) from error
    vector = track_vector(encoder.dims, factors, content)
    check_finite(vector, name, "predicted vector")
    return Embedding(
        **{fact.name: getattr(audio, fact.name) for fact in fields(DecodeFacts)},
        factors=factors,
        content=content,
        vector=vector,
        model_ms=(time.perf_counter() - started) * 1e3,
        tags=top_tags(encoder.tag_names, tags) if encoder.tag_names else None,
    )


def top_tags(
    names: Sequence[str], probabilities: np.ndarray, k: int = TOP_TAGS
) -> tuple[tuple[str, float], ...]:
    """The `k` most probable of `names` with their probabilities (len(names),), most
    probable first."""
    if len(names) != probabilities.shape[-1]:
        raise ValueError(f"{len(names)} tag names for {probabilities.shape[-1]} probabilities")
    order = np.argsort(-probabilities, kind="stable")[:k]
    return tuple((names[i], float(probabilities[i])) for i in order)


def predict_cached(
    encoder: ContentEncoder, cache: MelSource, song_ids: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """Whole-clip predictions (len(song_ids), F) float32 for songs in the mel cache, rows
    following `song_ids`, `batch_size` clips per forward pass."""
    return cached_rows(
        encoder, cache, song_ids, batch_size, encoder.forward_mel, encoder.dims.n_factors
    )


def embed_cached(
    encoder: ContentEncoder, cache: MelSource, song_ids: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """Whole-clip track vectors (len(song_ids), `track_vector_dims`) float32 for songs in
    the mel cache, rows following `song_ids` (`split_track_vector` on each row, or on the
    matrix's columns, gives the factors and the content embedding)."""

    def track_rows(mel: Tensor, lengths: Tensor) -> Tensor:
        factors, content = (t.cpu().numpy() for t in encoder.embed_mel(mel, lengths))
        return torch.from_numpy(track_vector(encoder.dims, factors, content))

    width = track_vector_dims(encoder.dims)
    return cached_rows(encoder, cache, song_ids, batch_size, track_rows, width)


def cached_rows(
    encoder: ContentEncoder,
    cache: MelSource,
    song_ids: Sequence[str],
    batch_size: int,
    forward: Callable[[Tensor, Tensor], Tensor],
    width: int,
) -> np.ndarray:
    """`forward(mels, lengths)` -> (B, width) over the whole clips of `song_ids`, in order,
    zero-padded into batches on the encoder's device (eval mode, no gradients): (n, width)
    float32, rows following `song_ids`."""
    encoder.eval()
    device = next(encoder.parameters()).device
    rows = []
    with torch.no_grad():
        for mel, lengths, _ in clip_loader(cache, song_ids, batch_size):
            rows.append(forward(mel.to(device), lengths.to(device)).cpu())
    if not rows:
        return np.zeros((0, width), np.float32)
    return torch.cat(rows).numpy().astype(np.float32)


class ClipDataset(Dataset[tuple[Tensor, int]]):
    """Index -> (the song's whole log-mel (n_mels, n_frames) float32, index)."""

    def __init__(self, cache: MelSource, song_ids: Sequence[str]):
        self.cache = cache
        self.song_ids = list(song_ids)

    def __len__(self) -> int:
        return len(self.song_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return torch.from_numpy(np.array(self.cache.load(self.song_ids[index]), np.float32)), index


def pad_clips(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Collate whole clips: (mels (B, n_mels, T_max) zero-padded, lengths (B,), indices (B,))."""
    mels = [mel for mel, _ in items]
    lengths = torch.tensor([mel.shape[1] for mel in mels])
    padded = mels[0].new_zeros((len(mels), mels[0].shape[0], int(lengths.max())))
    for row, mel in enumerate(mels):
        padded[row, :, : mel.shape[1]] = mel
    return padded, lengths, torch.tensor([index for _, index in items])


def clip_loader(
    cache: MelSource, song_ids: Sequence[str], batch_size: int, num_workers: int = 0
) -> DataLoader:
    """Whole clips of `song_ids` in order, padded into batches (see `pad_clips`)."""
    return DataLoader(
        ClipDataset(cache, song_ids),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pad_clips,
    )


def load_predictor(
    folder: Path, config: FrontEndConfig = FRONT_END
) -> Callable[[Path], np.ndarray]:
    """Load the model saved in `folder` (a content encoder of any architecture, the linear
    baseline or the multiscale k-means model); return `predict(file) -> (F,)`.

    An encoder goes through `embed_audio` behind its own front end; the classical models
    (saved behind `config`) get the front end's checked log-mel (`audio.frontend.log_mel`),
    as featurize stores it. `predict` raises `AudioError` for audio the front end refuses.
    Raises `ArtifactError` for a folder that holds none of them.
    """
    # Here, not at the top: scikit-learn stays out of the service, which imports this module.
    from training import baseline, kmeans

    folder = Path(folder)
    if (folder / ENCODER_CONFIG_FILE).is_file():
        encoder = load_encoder(folder)
        return lambda file: embed_audio(encoder, file).factors
    classical = {
        baseline.CONFIG_FILE: baseline.LinearBaseline,
        kmeans.CONFIG_FILE: kmeans.KMeansModel,
    }
    for config_file, model_class in classical.items():
        if (folder / config_file).is_file():
            model = model_class.load(folder, config)
            return lambda file: model.predict([log_mel(file, config)])[0]
    raise ArtifactError(
        f"{folder}: no model there (none of {ENCODER_CONFIG_FILE}, {', '.join(classical)})"
    )
