"""An upload's bytes -> its predicted factor vector, each stage timed.

The same path as `training.predict` (decode -> check -> the checkpoint's own `LogMel` ->
CNN), split into its stages so that the API can report where the time went and
`bench/service.py` can measure the bare in-process cost beside the HTTP one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audio.decode import DecodeLimits, decode_audio
from audio.errors import AudioError
from audio.frontend import check_finite, check_usable
from service.schemas import AudioInfo, AudioWarning
from training.encoder import ClipTooShortError, ContentEncoder


@dataclass(frozen=True)
class Embedding:
    """`vector` (n_factors,) float32, finite, for `seconds` of audio (`truncated`: the
    upload was longer than the decode limit; `normalised`: it peaked at `peak_dbfs`, above
    full scale, and was scaled down to it); the stages' wall-clock milliseconds."""

    vector: np.ndarray
    seconds: float
    truncated: bool
    peak_dbfs: float
    normalised: bool
    decode_ms: float
    features_ms: float
    model_ms: float

    def audio_info(self) -> AudioInfo:
        """What the answer to the upload says about its audio, warnings included."""
        warnings = []
        if self.truncated:
            warnings.append(
                AudioWarning(code="truncated", message=f"only the first {self.seconds:.0f} s used")
            )
        if self.normalised:
            warnings.append(
                AudioWarning(
                    code="peak_normalised",
                    message=f"samples peaked at {self.peak_dbfs:+.1f} dBFS, above full scale;"
                    " the recording was scaled down to peak at 0 dBFS",
                )
            )
        return AudioInfo(
            seconds=round(self.seconds, 3),
            truncated=self.truncated,
            peak_normalised=self.normalised,
            warnings=warnings,
        )


def embed_audio(
    encoder: ContentEncoder, source: bytes | Path, limits: DecodeLimits, name: str
) -> Embedding:
    """Predict the factors of one recording; `AudioError` if the front end refuses it or
    the prediction is not finite ("unembeddable").

    Runs on the calling thread with torch's current thread count: the service calls it
    from its worker threads, never on the event loop.
    """
    started = time.perf_counter()
    decoded = decode_audio(source, encoder.config, limits, name)
    check_usable(decoded.samples, encoder.config, name)
    decoded_at = time.perf_counter()
    with torch.inference_mode():
        mel = encoder.front_end(torch.from_numpy(decoded.samples))
        featured_at = time.perf_counter()
        try:
            vector = encoder.forward_mel(mel)[0].numpy().astype(np.float32)
        except ClipTooShortError as error:
            raise AudioError("too_short", name, str(error)) from error
    check_finite(vector, name, "predicted vector")
    done = time.perf_counter()
    return Embedding(
        vector=vector,
        seconds=decoded.seconds,
        truncated=decoded.truncated,
        peak_dbfs=decoded.peak_dbfs,
        normalised=decoded.normalised,
        decode_ms=(decoded_at - started) * 1e3,
        features_ms=(featured_at - decoded_at) * 1e3,
        model_ms=(done - featured_at) * 1e3,
    )
