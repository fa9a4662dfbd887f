"""Audio bytes -> their factor vector under a model version, for the service.

The audio is decoded and its model input computed in a decode worker process
(`service.decode_pool`: untrusted bytes never meet FFmpeg inside the service), then
embedded here (`training.inference.embed_model_input`, the one embedding path). Uploads
come this way, and so does the audio the catalogue stored from them, re-embedded for
another version (`service.cold_tracks`) or heard for its tags (`service.views`): it came
from the public too, and in the service's process a decoder would also keep its code and
buffers resident for good (BENCHMARKS.md, the soak). The stages' timings go into the
metrics; `embed` turns audio refused into its HTTP error (`from_audio_error`).
"""

from __future__ import annotations

from audio.decode import DecodeLimits
from audio.errors import AudioError
from pipeline.registry.read import LoadedVersion
from service.decode_pool import DecodePool
from service.errors import from_audio_error
from service.metrics import ServiceMetrics
from training.inference import Embedding, embed_model_input


class UploadEmbedder:
    """`embed(version, data, name)`: the `Embedding` of audio bytes with `version`'s
    encoder, within `limits`, decoded by `pool`."""

    def __init__(self, pool: DecodePool, limits: DecodeLimits, metrics: ServiceMetrics) -> None:
        self.pool = pool
        self.limits = limits
        self.metrics = metrics

    def embedding(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        """The embedding; `AudioError` for audio refused (or a decode worker lost on it),
        `DecoderUnavailable` when no decode worker came free in time."""
        encoder = version.encoder
        audio = self.pool.read(encoder.config, data, self.limits, name)
        embedding = embed_model_input(encoder, audio, name)
        self.metrics.observe_stages(
            decode=embedding.decode_ms, features=embedding.features_ms, model=embedding.model_ms
        )
        return embedding

    def embed(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        """The embedding of an upload; a `ServiceError` for refused audio."""
        try:
            return self.embedding(version, data, name)
        except AudioError as error:
            raise from_audio_error(error) from error
