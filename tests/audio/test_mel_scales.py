"""Mel filterbanks and log compressions against librosa's and torchaudio's."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
import torchaudio

from audio.config import FRONT_END
from audio.mel_scales import hz_to_mel, log_compress, mel_filterbank, mel_to_hz


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels", "f_min", "f_max"),
    [
        (16000, 512, 96, 0.0, 8000.0),
        (22050, 1024, 128, 0.0, 11025.0),
        (44100, 2048, 40, 50.0, 9000.0),
    ],
)
@pytest.mark.parametrize(
    ("scale", "norm"), [("slaney", "slaney"), ("htk", None), ("htk", "slaney"), ("slaney", None)]
)
def test_filterbanks_are_librosas(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    scale: str,
    norm: str | None,
) -> None:
    expected = librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=scale == "htk",
        norm=norm,
    )
    filters = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, scale, norm)  # type: ignore[arg-type]
    assert filters.dtype == torch.float32 and filters.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(filters.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_the_project_front_ends_filterbank_is_torchaudios() -> None:
    """HTK without normalisation: what `audio.mel.LogMel` takes from torchaudio today
    (torchaudio computes in float32, hence the tolerance)."""
    config = FRONT_END
    expected = torchaudio.functional.melscale_fbanks(
        config.n_fft // 2 + 1, config.f_min, config.f_max, config.n_mels, config.sample_rate
    ).T
    filters = mel_filterbank(
        config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max, "htk", None
    )
    torch.testing.assert_close(filters, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_the_mel_scales_are_librosas_and_invert(scale: str) -> None:
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    mels = hz_to_mel(hz, scale)  # type: ignore[arg-type]
    np.testing.assert_allclose(mels, librosa.hz_to_mel(hz, htk=scale == "htk"), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(mels, scale), hz, rtol=1e-12, atol=1e-9)  # type: ignore[arg-type]


def test_log_compressions() -> None:
    power = torch.tensor([0.0, 1e-6, 0.5, 3.0e4], dtype=torch.float64)
    torch.testing.assert_close(log_compress(power, "log", 1e-5), torch.log(power.float() + 1e-5))
    musicnn = log_compress(power, "log10_1p", 1e-4)
    assert musicnn.dtype == torch.float32 and musicnn[0] == 0.0  # silence at 0
    torch.testing.assert_close(musicnn, torch.log10(1 + 10000 * power.float()))


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        mel_filterbank(16000, 512, 96, 0.0, 9000.0, "slaney", "slaney")
    with pytest.raises(ValueError, match="do not fit"):
        mel_filterbank(16000, 512, 96, 500.0, 500.0, "slaney", "slaney")
    with pytest.raises(ValueError, match="must be positive"):
        mel_filterbank(16000, 512, 0, 0.0, 8000.0, "slaney", "slaney")
    with pytest.raises(ValueError, match="unknown mel scale"):
        mel_filterbank(16000, 512, 96, 0.0, 8000.0, "bark", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mel norm"):
        mel_filterbank(16000, 512, 96, 0.0, 8000.0, "htk", "l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log compression"):
        log_compress(torch.ones(3), "db", 1e-5)  # type: ignore[arg-type]
