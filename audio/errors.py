"""The one domain error for audio that cannot become model input.

Every bad upload or dataset file ends here, whatever the cause (a decoder failure, a
clip too short for one window, digital silence, an oversized file, NaN samples), so that the
service can map it to a single HTTP answer and `coldstart featurize` can record it.
"""

from __future__ import annotations

from typing import Literal, get_args

AudioErrorCode = Literal[
    "undecodable",
    "empty",
    "too_short",
    "silent",
    "too_large",
    "invalid_samples",
    "unembeddable",
    "decoder_failed",
    "decode_timeout",
    "decode_out_of_memory",
]
AUDIO_ERROR_CODES: tuple[str, ...] = get_args(AudioErrorCode)


class AudioError(ValueError):
    """Audio that the front end refuses; `code` says why, the message names the source.

    `code` is one of `AUDIO_ERROR_CODES`: "undecodable" (not audio, or no frame decodes),
    "empty" (zero bytes), "too_short" (less than one window), "silent", "too_large",
    "invalid_samples" (NaN or infinite sample values), "unembeddable" (the log-mel or the
    predicted vector is unusable, e.g. NaN or inf: nothing of it may be stored); and where
    the decoding runs in a worker process with limits (`service.decode_pool`):
    "decoder_failed" (the worker died on it, e.g. a crash in a decoder), "decode_timeout"
    (past its wall-clock deadline or CPU seconds), "decode_out_of_memory" (past its
    address-space limit).
    """

    def __init__(self, code: AudioErrorCode, source: str, reason: str) -> None:
        if code not in AUDIO_ERROR_CODES:
            raise ValueError(f"unknown audio error code {code!r}")
        super().__init__(f"{source}: {reason}")
        self.code: AudioErrorCode = code
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str, str]]:
        # Rebuild from the three fields, so the error survives a process pool.
        return type(self), (self.code, self.source, self.reason)
