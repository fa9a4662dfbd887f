"""bench/serving.py's bare floor does the service's work: the same log-mel and samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import decode_usable
from audio.mel import LogMel
from bench.serving import pyav_decode, stft_log_mel
from training.encoders.musicnn import MUSICNN_FRONT_END
from training.encoders.samplecnn import WAVEFORM_FRONT_END

RECORDING = Path(__file__).parents[1] / "assets" / "audio" / "brahms_hungarian_dance_5.flac"


@pytest.mark.parametrize("config", [FRONT_END, MUSICNN_FRONT_END], ids=["default", "musicnn"])
def test_the_bare_log_mel_is_the_front_ends(config: FrontEndConfig) -> None:
    samples = torch.from_numpy(decode_usable(RECORDING, config).samples)
    bare = stft_log_mel(config)(samples)
    ours = LogMel(config)(samples)[0]
    assert bare.shape == ours.shape == (config.n_mels, 1 + samples.numel() // config.hop_length)
    assert torch.allclose(bare, ours, atol=1e-4)


def test_the_bare_decode_gives_mono_samples_at_the_rate_for_as_long() -> None:
    data = RECORDING.read_bytes()
    bare = pyav_decode(data, FRONT_END.sample_rate)
    ours = decode_usable(data, FRONT_END).samples
    assert bare.ndim == 1 and bare.dtype == ours.dtype
    assert abs(bare.size - ours.size) <= FRONT_END.sample_rate // 100  # the resampler's tail


def test_a_waveform_front_end_has_no_log_mel_to_add() -> None:
    samples = torch.ones(WAVEFORM_FRONT_END.sample_rate)
    assert stft_log_mel(WAVEFORM_FRONT_END)(samples) is samples
