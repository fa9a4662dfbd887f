"""bench/serving.py's upload floors do the service's work: the same log-mel and samples,
the bare library calls within 1e-4, and on every core at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import decode_usable
from audio.frontend import model_input_of
from audio.mel import LogMel
from bench.serving import (
    UPLOAD_FLOORS,
    all_cores_floor_rps,
    pyav_decode,
    stft_log_mel,
    upload_floor_work,
)
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


def test_the_upload_floors_compute_the_services_model_input() -> None:
    data = RECORDING.read_bytes()
    own = upload_floor_work("decode+mel", data, FRONT_END)()
    bare = upload_floor_work("bare decode+mel", data, FRONT_END)()
    service = model_input_of(decode_usable(data, FRONT_END), FRONT_END, "clip", 0.0).values
    assert isinstance(own, np.ndarray) and np.array_equal(own, service)
    assert isinstance(bare, torch.Tensor) and bare.shape == service.shape
    with pytest.raises(ValueError, match="unknown upload floor"):
        upload_floor_work("decode", data, FRONT_END)


def test_the_all_cores_floor_runs_every_floor_in_each_process_at_once() -> None:
    rates = all_cores_floor_rps(RECORDING.read_bytes(), FRONT_END, processes=2, seconds=0.3)
    assert set(rates) == set(UPLOAD_FLOORS)
    # a decode + log-mel of 8 s takes milliseconds: two processes make more than a few calls
    assert all(rate > 2.0 for rate in rates.values())
