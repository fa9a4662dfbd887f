"""Factors of any audio file through the serving path: decode -> check -> model.

The CNN runs on the decoded waveform through its own `LogMel` (the checkpoint's front
end); the linear baseline gets its log-mel from the same `LogMel`. Neither reads the mel
cache, so this is what the service does with an upload.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import decode_audio
from audio.frontend import check_usable
from audio.mel import LogMel

MODELS = ("cnn", "linear")


def load_predictor(
    folder: Path, model: str, config: FrontEndConfig = FRONT_END
) -> Callable[[Path], np.ndarray]:
    """Load the model saved in `folder` ("cnn" or "linear"); return `predict(file) -> (F,)`.

    `predict` raises `audio.errors.AudioError` for audio the front end refuses.
    """
    if model == "cnn":
        from training.checkpoint import load_encoder

        encoder = load_encoder(folder, config)

        def predict_cnn(file: Path) -> np.ndarray:
            samples = _samples(file, config)
            with torch.inference_mode():
                return encoder(torch.from_numpy(samples))[0].numpy()

        return predict_cnn
    if model == "linear":
        from training.baseline import LinearBaseline

        baseline = LinearBaseline.load(folder, config)
        front_end = LogMel(config).eval()

        def predict_linear(file: Path) -> np.ndarray:
            samples = _samples(file, config)
            with torch.inference_mode():
                log_mel = front_end(torch.from_numpy(samples))[0].numpy()
            return baseline.predict([log_mel])[0]

        return predict_linear
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def _samples(file: Path, config: FrontEndConfig) -> np.ndarray:
    decoded = decode_audio(file, config)
    check_usable(decoded.samples, config, Path(file).name)
    return decoded.samples
