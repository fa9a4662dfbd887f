"""An upload's bytes -> its factor vector under a model version, for the service.

`training.inference.embed_audio` is the one embedding path; here its stage timings go into
the metrics and audio the front end refuses becomes its HTTP error (`from_audio_error`).
"""

from __future__ import annotations

from audio.decode import DecodeLimits
from audio.errors import AudioError
from pipeline.registry.read import LoadedVersion
from service.errors import from_audio_error
from service.metrics import ServiceMetrics
from training.inference import Embedding, embed_audio


class UploadEmbedder:
    """`embed(version, data, name)`: the upload's `Embedding` with `version`'s encoder,
    within `limits`; a `ServiceError` for refused audio."""

    def __init__(self, limits: DecodeLimits, metrics: ServiceMetrics) -> None:
        self.limits = limits
        self.metrics = metrics

    def embed(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        try:
            embedding = embed_audio(version.encoder, data, self.limits, name)
        except AudioError as error:
            raise from_audio_error(error) from error
        self.metrics.observe_stages(
            decode=embedding.decode_ms, features=embedding.features_ms, model=embedding.model_ms
        )
        return embedding
