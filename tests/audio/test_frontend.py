"""LogMel, the checks before it, log_mel end to end and the 3-second windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import check_usable, decode_audio, decode_usable
from audio.errors import AudioError
from audio.frontend import check_finite, log_mel, mel_windows
from audio.mel import LogMel

MUSIC = [
    "vibe_ace.mp3",
    "brahms_hungarian_dance_5.flac",
    "lets_go_fishin.m4a",
    "sugar_plum_fairy.wav",
    "trumpet_loop.ogg",
    "asc_game_theme.mp3",
    "warzone_track.opus",
    "humpback_whale.opus",
    "speech_librispeech.ogg",
]


def test_log_mel_module_shapes_and_config() -> None:
    config = FrontEndConfig(n_mels=64)
    module = LogMel(config)
    assert module.config is config
    waveform = 0.1 * torch.randn(3, 22050, generator=torch.Generator().manual_seed(0))
    mel = module(waveform)
    assert mel.shape == (3, 64, 1 + 22050 // 512) and mel.dtype == torch.float32
    assert module(waveform[0]).shape == (1, 64, 44)


def test_batch_and_single_agree() -> None:
    module = LogMel()
    waveform = 0.1 * torch.randn(4, 70_000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = module(waveform)
        alone = torch.cat([module(row) for row in waveform])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_silence_sits_at_the_log_offset_floor() -> None:
    mel = LogMel()(torch.zeros(FRONT_END.min_samples))
    torch.testing.assert_close(mel, torch.full_like(mel, np.log(FRONT_END.log_offset)))


@pytest.mark.parametrize("file_name", MUSIC)
def test_real_recordings_give_mels(audio_assets: Path, file_name: str) -> None:
    path = audio_assets / file_name
    n_samples = decode_audio(path).samples.size
    mel = log_mel(path)
    assert mel.shape == (128, 1 + n_samples // 512) and mel.dtype == np.float32
    assert np.isfinite(mel).all()
    assert mel_windows(mel).shape == (mel.shape[1] // 130, 128, 130)


def test_log_mel_is_the_modules_output(audio_assets: Path) -> None:
    """The cached path (log_mel) and the encoder's path (LogMel on samples) agree."""
    path = audio_assets / "vibe_ace.mp3"
    samples = torch.from_numpy(decode_audio(path).samples)
    with torch.no_grad():
        expected = LogMel()(samples)[0].numpy()
    np.testing.assert_allclose(log_mel(path.read_bytes()), expected, rtol=1e-5, atol=1e-5)


def test_robin_chirp_is_too_short(audio_assets: Path) -> None:
    with pytest.raises(AudioError) as caught:
        log_mel(audio_assets / "robin_chirp.ogg")
    assert caught.value.code == "too_short"
    assert "robin_chirp.ogg" in str(caught.value)


def test_fifth_of_a_second_is_too_short(wav) -> None:
    with pytest.raises(AudioError, match="blip.wav") as caught:
        log_mel(wav("blip.wav", np.full(8820, 0.3), 44100))
    assert caught.value.code == "too_short"


@pytest.mark.parametrize("level", [0.0, 3e-5])  # digital zero; one LSB of 16-bit dither
def test_silence_is_refused(wav, level: float) -> None:
    quiet = level * np.random.default_rng(0).choice([-1.0, 1.0], 5 * 44100)
    with pytest.raises(AudioError) as caught:
        log_mel(wav("quiet.wav", quiet, 44100))
    assert caught.value.code == "silent"


def test_one_window_is_enough() -> None:
    tone = 0.1 * np.sin(np.arange(FRONT_END.min_samples, dtype=np.float32))
    check_usable(tone)
    with pytest.raises(AudioError, match="shorter than one"):
        check_usable(tone[:-1])


def test_mel_windows() -> None:
    mel = np.arange(4 * 400, dtype=np.float32).reshape(4, 400)
    windows = mel_windows(mel)
    assert windows.shape == (3, 4, 130)
    np.testing.assert_array_equal(windows[2], mel[:, 260:390])
    overlapping = mel_windows(mel, hop_frames=65)
    assert overlapping.shape == (5, 4, 130)
    np.testing.assert_array_equal(overlapping[1], mel[:, 65:195])
    assert mel_windows(mel[:, :130]).shape == (1, 4, 130)
    assert mel_windows(mel[:, :129]).shape == (0, 4, 130)
    assert mel_windows(mel.astype(np.float16)).dtype == np.float16


def test_log_mel_of_hostile_samples_is_finite_or_refused() -> None:
    """The mel the cache stores is finite for over-full-scale floats; NaN is refused."""
    from tests.hostile_audio import hostile_corpus

    corpus = hostile_corpus()
    for case in ("float-wav-1e30", "float-wav-plus-6-dbfs"):
        assert np.isfinite(log_mel(corpus[case].data)).all()
    with pytest.raises(AudioError, match="nan.wav") as caught:
        log_mel(corpus["float-wav-nan"].data, name="nan.wav")
    assert caught.value.code == "invalid_samples"


def test_check_finite_refuses_nan_and_inf() -> None:
    check_finite(np.zeros(3, np.float32), "song.wav", "log-mel")
    for bad in (np.nan, np.inf):
        with pytest.raises(AudioError, match="song.wav: the log-mel holds NaN") as caught:
            check_finite(np.array([0.0, bad]), "song.wav", "log-mel")
        assert caught.value.code == "unembeddable"


def test_a_waveform_front_end_gives_the_samples_as_one_row(audio_assets: Path) -> None:
    """No mel: the model input is the decoded samples at the front end's rate, (1, n); a
    window is `window_frames` samples, and a mel's bands or hop are refused."""
    from audio.config import FrontEndMismatchError
    from audio.frontend import Waveform, model_input

    config = FrontEndConfig(
        representation="waveform", sample_rate=16000, n_mels=1, hop_length=1, window_frames=48000
    )
    assert config.min_samples == 48000 and config.window_seconds == 3.0
    assert config.n_frames(50000) == 50000 and FRONT_END.n_frames(66150) == 130
    source = audio_assets / MUSIC[0]
    samples = decode_usable(source, config).samples
    waveform = model_input(source, config)
    assert waveform.shape == (1, samples.size) and waveform.dtype == np.float32
    np.testing.assert_array_equal(waveform[0], samples)
    assert Waveform()(torch.from_numpy(samples)).shape == (1, 1, samples.size)
    np.testing.assert_array_equal(model_input(source), log_mel(source))
    from tests.hostile_audio import tone, wav_bytes

    with pytest.raises(AudioError) as caught:
        model_input(wav_bytes(tone(2.9, 16000), 16000), config)
    assert caught.value.code == "too_short"
    with pytest.raises(FrontEndMismatchError, match="n_mels 1"):
        FrontEndConfig(representation="waveform", hop_length=1)
