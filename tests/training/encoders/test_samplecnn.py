"""The sample-level CNN: its frame arithmetic against the real stack, behind its own front end."""

from __future__ import annotations

import pytest
import torch

from audio.config import FRONT_END
from training.encoders.samplecnn import WAVEFORM_FRONT_END, SampleCNNDims, SampleCNNEncoder


def test_frames_out_and_min_frames_follow_the_convolutions() -> None:
    dims = SampleCNNEncoder.small_dims
    assert isinstance(dims, SampleCNNDims)
    net = SampleCNNEncoder(dims).eval()
    for samples in (dims.min_frames, dims.min_frames + 2, 48000, 100_003):
        with torch.no_grad():
            frames = net.convs(torch.randn(1, 1, samples)).shape[2]
        assert frames == int(dims.frames_out(torch.tensor(samples)))
    assert int(dims.frames_out(torch.tensor(dims.min_frames))) == 1
    assert int(dims.frames_out(torch.tensor(dims.min_frames - 1))) == 0
    # The default: one frame left of a 3-s crop at 16 kHz (the paper's 3^9 model, shorter).
    assert SampleCNNDims().min_frames <= WAVEFORM_FRONT_END.window_frames == 48000
    assert int(SampleCNNDims().frames_out(torch.tensor(48000))) == 1


def test_it_takes_the_waveform_and_refuses_a_mel_front_end() -> None:
    net = SampleCNNEncoder(SampleCNNEncoder.small_dims).eval()
    assert net.input_bands == 1
    with torch.no_grad():
        assert net(0.1 * torch.randn(2, 48000)).shape == (2, net.dims.n_factors)
    with pytest.raises(ValueError, match="waveform"):
        SampleCNNEncoder(SampleCNNDims(), FRONT_END)
