"""musicnn's input against librosa's pipeline (the one the MSD and MTT weights learnt on)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from audio.musicnn_input import MUSICNN_FRONT_END, MusicnnLogMel


@pytest.mark.parametrize("recording", ["brahms_hungarian_dance_5.flac", "speech_librispeech.ogg"])
def test_musicnns_log_mel_is_librosas(audio_assets: Path, recording: str) -> None:
    samples, rate = librosa.load(audio_assets / recording, sr=MUSICNN_FRONT_END.sample_rate)
    power = librosa.feature.melspectrogram(
        y=samples, sr=rate, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect"
    )
    expected = np.log10(1 + 10000 * power)  # float32, as musicnn's authors computed it
    with torch.inference_mode():
        log_mel = MusicnnLogMel()(torch.from_numpy(samples))
    assert log_mel.shape == (1, 96, 1 + samples.size // 256)
    np.testing.assert_allclose(log_mel[0].numpy(), expected, rtol=0, atol=2e-5)


def test_a_batch_is_each_clip_alone_and_the_filters_are_not_weights() -> None:
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.normal(0, 0.1, (3, 16000)).astype(np.float32))
    front_end = MusicnnLogMel()
    together = front_end(batch)
    for row, clip in enumerate(batch):
        torch.testing.assert_close(together[row], front_end(clip)[0])
    assert front_end.state_dict() == {}  # functions of the config, rebuilt on load
    with pytest.raises(ValueError, match="expected"):
        front_end(batch[None])
