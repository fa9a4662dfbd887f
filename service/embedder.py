"""An upload's bytes -> its factor vector under a model version, for the service.

The upload is decoded and its model input computed in a decode worker process
(`service.decode_pool`: untrusted bytes never meet FFmpeg inside the service), then
embedded here (`training.inference.embed_model_input`, the one embedding path); the
stages' timings go into the metrics and audio refused becomes its HTTP error
(`from_audio_error`).
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
    """`embed(version, data, name)`: the upload's `Embedding` with `version`'s encoder,
    within `limits`, decoded by `pool`; a `ServiceError` for refused audio."""

    def __init__(self, pool: DecodePool, limits: DecodeLimits, metrics: ServiceMetrics) -> None:
        self.pool = pool
        self.limits = limits
        self.metrics = metrics

    def embed(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        encoder = version.encoder
        try:
            audio = self.pool.read(encoder.config, data, self.limits, name)
            embedding = embed_model_input(encoder, audio, name)
        except AudioError as error:
            raise from_audio_error(error) from error
        self.metrics.observe_stages(
            decode=embedding.decode_ms, features=embedding.features_ms, model=embedding.model_ms
        )
        return embedding
