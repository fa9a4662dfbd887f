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


class FrontEndMismatchError(ValueError):
    """A saved artifact was made with a front end that differs from the one in use."""


@dataclass(frozen=True)
class FrontEndConfig:
    """Constants of the log-mel front end (van den Oord et al. 2013: 128 bands, 1024/512).

    `window_frames` = 130 frames is 3 s at 22050 Hz with hop 512 and centred frames
    (1 + 66150 // 512 = 130).
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

    @property
    def window_seconds(self) -> float:
        return (self.window_frames - 1) * self.hop_length / self.sample_rate

    @property
    def min_samples(self) -> int:
        """Fewest samples that give one whole window of centred frames."""
        return (self.window_frames - 1) * self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrontEndConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise FrontEndMismatchError(f"unknown front-end fields {sorted(unknown)}")
        return cls(**values)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of every field: equal fingerprints, equal front ends."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def require_same(self, saved: FrontEndConfig | dict[str, Any], what: str = "model") -> None:
        """Raise `FrontEndMismatchError` naming each differing field if `saved` differs."""
        other = saved if isinstance(saved, FrontEndConfig) else FrontEndConfig.from_dict(saved)
        if other == self:
            return
        diffs = [
            f"{name}: saved {getattr(other, name)!r}, in use {getattr(self, name)!r}"
            for name in self.to_dict()
            if getattr(other, name) != getattr(self, name)
        ]
        raise FrontEndMismatchError(
            f"{what} was made with a different audio front end ({'; '.join(diffs)})"
        )


FRONT_END = FrontEndConfig()
