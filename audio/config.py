"""The one front-end configuration: every constant that turns audio into model input.

It is frozen, saved with every model, and compared on load: a model trained on one
front end must refuse to run behind another (see `FrontEndMismatchError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np


class FrontEndMismatchError(ValueError):
    """A saved artifact was made with a front end that differs from the one in use."""


# The mel scales, band normalisations and log compressions a front end may name
# (`audio.mel` implements them).
MEL_SCALE_NAMES = ("htk", "slaney")
MEL_NORMS = (None, "slaney")
LOG_COMPRESSIONS = ("log", "log10_1p")
# What a front end gives a model: a log-mel (n_mels, frames), or the decoded samples
# themselves (1, samples) for a model that learns from the raw waveform.
REPRESENTATIONS = ("log_mel", "waveform")
# Fields added after caches and checkpoints were made with their defaults: left out of the
# fingerprint while they hold those defaults, so existing mel caches keep their folder.
_LATER_FIELDS = {
    "mel_scale": "htk",
    "mel_norm": None,
    "log_compression": "log",
    "representation": "log_mel",
    "excerpt_seconds": None,
}


@dataclass(frozen=True)
class FrontEndConfig:
    """Constants of a log-mel front end; the defaults are the project's (van den Oord et al.
    2013: 128 HTK bands, 1024/512, ln(mel + 1e-5)).

    `window_frames` = 130 frames is 3 s at 22050 Hz with hop 512 and centred frames
    (1 + 66150 // 512 = 130). `mel_scale` ("htk" or "slaney") spaces the bands, `mel_norm`
    ("slaney": each band divided by its width, equal area; None: peaks at 1) scales them, and
    `log_compression` is "log", ln(mel + `log_offset`), or "log10_1p", log10(1 + mel /
    `log_offset`) (musicnn's log10(1 + 10000 x) with `log_offset` 1e-4).

    `excerpt_seconds` bounds what a model hears of a longer recording to its centred
    excerpt of that length (None: all of it), in training, evaluation and serving alike;
    it bounds a song's bytes in the mel cache (a 30-s clip's 128 bands are 330 kB in
    float16: 127 GB for 385k songs). Its cost in cold-track mAP: bench/cache_bounds.py.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 11025.0
    window_frames: int = 130
    log_offset: float = 1e-5
    schema_version: int = 1
    mel_scale: str = "htk"
    mel_norm: str | None = None
    log_compression: str = "log"
    representation: str = "log_mel"
    excerpt_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.excerpt_seconds is not None and not (
            self.excerpt_seconds * self.sample_rate >= self.min_samples
        ):
            raise FrontEndMismatchError(
                f"an excerpt of {self.excerpt_seconds} s is shorter than one model window"
                f" ({self.min_samples / self.sample_rate:.2f} s)"
            )
        if self.representation not in REPRESENTATIONS:
            raise FrontEndMismatchError(
                f"unknown representation {self.representation!r}"
                f" (one of {', '.join(REPRESENTATIONS)})"
            )
        if self.is_waveform and (self.n_mels, self.hop_length) != (1, 1):
            raise FrontEndMismatchError(
                "a waveform front end has one row (n_mels 1) of one sample a frame"
                f" (hop_length 1), got n_mels {self.n_mels}, hop_length {self.hop_length}"
            )
        if self.mel_scale not in MEL_SCALE_NAMES:
            raise FrontEndMismatchError(
                f"unknown mel scale {self.mel_scale!r} (one of {', '.join(MEL_SCALE_NAMES)})"
            )
        if self.mel_norm not in MEL_NORMS:
            raise FrontEndMismatchError(f"unknown mel norm {self.mel_norm!r} (slaney or None)")
        if self.log_compression not in LOG_COMPRESSIONS:
            raise FrontEndMismatchError(
                f"unknown log compression {self.log_compression!r}"
                f" (one of {', '.join(LOG_COMPRESSIONS)})"
            )

    @property
    def is_waveform(self) -> bool:
        return self.representation == "waveform"

    @property
    def window_seconds(self) -> float:
        return self.min_samples / self.sample_rate

    @property
    def min_samples(self) -> int:
        """Fewest samples that give one whole window (of centred frames, or of samples)."""
        if self.is_waveform:
            return self.window_frames
        return (self.window_frames - 1) * self.hop_length

    def excerpt(self, samples: np.ndarray) -> np.ndarray:
        """The centred `excerpt_seconds` of mono `samples` (n,) (a view; all of them when
        shorter or without a bound)."""
        if self.excerpt_seconds is None:
            return samples
        keep = round(self.excerpt_seconds * self.sample_rate)
        start = max(0, (samples.shape[-1] - keep) // 2)
        return samples[..., start : start + keep]

    def n_frames(self, n_samples: int) -> int:
        """Frames of model input that `n_samples` samples give (centred frames: 1 + n // hop)."""
        return n_samples if self.is_waveform else 1 + n_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """Every field, but the later ones only where they differ from their defaults: a
        front end written today reads the same, and code from before a field existed reads
        every file that does not use it (a service not yet upgraded, a rolled-back one)."""
        return {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if name not in _LATER_FIELDS or value != _LATER_FIELDS[name]
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrontEndConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise FrontEndMismatchError(f"unknown front-end fields {sorted(unknown)}")
        return cls(**values)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of `to_dict`: equal fingerprints, equal front ends."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def require_same(self, saved: FrontEndConfig | dict[str, Any], what: str = "model") -> None:
        """Raise `FrontEndMismatchError` naming each differing field if `saved` differs."""
        other = saved if isinstance(saved, FrontEndConfig) else FrontEndConfig.from_dict(saved)
        if other == self:
            return
        diffs = [
            f"{name}: saved {getattr(other, name)!r}, in use {getattr(self, name)!r}"
            for name in (field.name for field in dataclasses.fields(self))
            if getattr(other, name) != getattr(self, name)
        ]
        raise FrontEndMismatchError(
            f"{what} was made with a different audio front end ({'; '.join(diffs)})"
        )


FRONT_END = FrontEndConfig()
