"""LogMel on torch.stft against the torchaudio LogMel it replaced, and its filterbank against
librosa's."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from torch import nn

from audio.config import FRONT_END, FrontEndConfig
from audio.mel import LogMel, mel_filterbank

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "mel" / "torchaudio_log_mel.npz"


@pytest.mark.parametrize("name", ["sugar_plum_fairy", "vibe_ace"])
def test_matches_the_torchaudio_log_mel(name: str) -> None:
    """Absolute 1e-5 on log(mel + 1e-5) is 1e-5 relative on the mel power (plus the floor):
    what the cache stores, in float16, differs by far more from either."""
    reference = np.load(REFERENCE, allow_pickle=False)
    samples = torch.from_numpy(reference[f"{name}_samples"])
    with torch.inference_mode():
        mel = LogMel()(samples)[0].numpy()
    expected = reference[f"{name}_log_mel"]
    assert mel.shape == expected.shape == (FRONT_END.n_mels, 1 + samples.numel() // 512)
    np.testing.assert_allclose(mel, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [FRONT_END, FrontEndConfig(sample_rate=16000, n_mels=80, f_min=30.0, f_max=8000.0)],
)
def test_filterbank_is_librosas_htk_filterbank(config: FrontEndConfig) -> None:
    filterbank = mel_filterbank(
        config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
    )
    expected = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
        htk=True,
        norm=None,
    ).T
    assert filterbank.shape == (1 + config.n_fft // 2, config.n_mels)
    assert filterbank.dtype == torch.float32
    # Built in float32 (as torchaudio did), librosa's in float64: weights peak at 1.
    np.testing.assert_allclose(filterbank.numpy(), expected, rtol=0, atol=3e-5)
    assert (filterbank.amax(dim=0) > 0).all()  # no empty band


def test_log_mel_uses_the_configs_filterbank() -> None:
    config = FrontEndConfig(n_mels=64, f_min=50.0)
    expected = mel_filterbank(config.sample_rate, config.n_fft, 64, 50.0, config.f_max)
    assert torch.equal(LogMel(config).filterbank, expected)


def test_unknown_mel_scale_and_bad_band_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown mel scale 'bark'"):
        mel_filterbank(22050, 1024, 128, 0.0, 11025.0, mel_scale="bark")
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(22050, 1024, 128, 0.0, 12000.0)
    with pytest.raises(ValueError, match="f_min < f_max"):
        mel_filterbank(22050, 1024, 128, 5000.0, 5000.0)


def test_loads_a_state_dict_from_the_torchaudio_days() -> None:
    """Checkpoints saved while LogMel wrapped torchaudio name its buffers
    `front_end.mel.spectrogram.window` and `front_end.mel.mel_scale.fb`: they still load."""
    holder = nn.ModuleDict({"front_end": LogMel()})
    window = torch.linspace(0.0, 1.0, FRONT_END.n_fft)
    filterbank = torch.full_like(holder["front_end"].filterbank, 0.25)
    holder.load_state_dict(
        {"front_end.mel.spectrogram.window": window, "front_end.mel.mel_scale.fb": filterbank}
    )
    assert torch.equal(holder["front_end"].window, window)
    assert torch.equal(holder["front_end"].filterbank, filterbank)
    assert set(holder.state_dict()) == {"front_end.window", "front_end.filterbank"}
