"""LogMel on torch.stft against the torchaudio LogMel it replaced, musicnn's front end against
librosa's pipeline, and the filterbanks and log compressions against librosa's."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audio.config import FRONT_END, FrontEndConfig, FrontEndMismatchError
from audio.mel import LogMel, centred_frames, log_compress, mel_filterbank, power_spectrum
from training.encoders.musicnn import MUSICNN_FRONT_END

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "mel" / "torchaudio_log_mel.npz"


@pytest.mark.parametrize("name", ["sugar_plum_fairy", "vibe_ace"])
def test_matches_the_torchaudio_log_mel(name: str) -> None:
    """Every bin's mel power within 1e-5 of its frame's loudest bin. A float32 FFT rounds
    by about 1e-6 of a frame's energy, and differently on each CPU's kernels (AVX-512 or
    AVX2): a large share of the quietest bins' power, up to 3e-4 on their log, so the bins
    are compared on their frame's scale; a filterbank or scale mismatch would be 1e-3 and
    more everywhere. What the cache stores, in float16, differs by far more from either."""
    reference = np.load(REFERENCE, allow_pickle=False)
    samples = torch.from_numpy(reference[f"{name}_samples"])
    with torch.inference_mode():
        mel = LogMel()(samples)[0].numpy()
    expected = reference[f"{name}_log_mel"]
    assert mel.shape == expected.shape == (FRONT_END.n_mels, 1 + samples.numel() // 512)
    power, expected_power = np.exp(mel.astype(np.float64)), np.exp(expected.astype(np.float64))
    frame_peak = expected_power.max(axis=0, keepdims=True)
    np.testing.assert_array_less(np.abs(power - expected_power) / frame_peak, 1e-5)


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


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels", "f_min", "f_max"),
    [(16000, 512, 96, 0.0, 8000.0), (22050, 1024, 128, 0.0, 11025.0), (44100, 2048, 40, 50.0, 9e3)],
)
@pytest.mark.parametrize("norm", ["slaney", None])
def test_slaney_filterbanks_are_librosas(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float, norm: str | None
) -> None:
    """Slaney's filters are built in float64 as librosa builds them (musicnn learnt on those)."""
    expected = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, norm=norm
    ).T
    filters = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, "slaney", norm)
    assert filters.dtype == torch.float32 and filters.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(filters.numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("recording", ["brahms_hungarian_dance_5.flac", "speech_librispeech.ogg"])
def test_musicnns_log_mel_is_librosas(audio_assets: Path, recording: str) -> None:
    """musicnn's front end (16 kHz, 96 Slaney bands, log10(1 + 10000 x)) is the pipeline its
    MSD and MTT weights learnt on: librosa's mel power, reflect-padded, compressed in float32."""
    samples, rate = librosa.load(audio_assets / recording, sr=MUSICNN_FRONT_END.sample_rate)
    power = librosa.feature.melspectrogram(
        y=samples, sr=rate, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect"
    )
    expected = np.log10(1 + 10000 * power)
    with torch.inference_mode():
        log_mel = LogMel(MUSICNN_FRONT_END)(torch.from_numpy(samples))
    assert log_mel.shape == (1, 96, 1 + samples.size // 256)
    np.testing.assert_allclose(log_mel[0].numpy(), expected, rtol=0, atol=2e-5)


def test_log_compressions() -> None:
    power = torch.tensor([0.0, 1e-6, 0.5, 3.0e4], dtype=torch.float64)
    torch.testing.assert_close(log_compress(power, "log", 1e-5), torch.log(power.float() + 1e-5))
    musicnn = log_compress(power, "log10_1p", 1e-4)
    assert musicnn.dtype == torch.float32 and musicnn[0] == 0.0  # silence at 0
    torch.testing.assert_close(musicnn, torch.log10(1 + 10000 * power.float()))
    with pytest.raises(ValueError, match="unknown log compression"):
        log_compress(power, "db", 1e-5)


def test_a_batch_is_each_clip_alone() -> None:
    batch = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (3, 16000)).astype("f4"))
    front_end = LogMel(MUSICNN_FRONT_END)
    together = front_end(batch)
    for row, clip in enumerate(batch):
        torch.testing.assert_close(together[row], front_end(clip)[0])
    with pytest.raises(ValueError, match="expected"):
        front_end(batch[None])


def _whole_clip_log_mel(module: LogMel, waveform: torch.Tensor) -> torch.Tensor:
    """The log-mel by one `torch.stft` over the whole clip, as `LogMel` computed it before
    it went block by block."""
    config = module.config
    spectrum = torch.stft(
        waveform if waveform.ndim == 2 else waveform[None],
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window=module.window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    mel = torch.matmul(power_spectrum(spectrum).transpose(-1, -2), module.filterbank)
    return log_compress(mel.transpose(-1, -2), config.log_compression, config.log_offset)


@pytest.mark.parametrize("config", [FRONT_END, MUSICNN_FRONT_END], ids=["default", "musicnn"])
@pytest.mark.parametrize("shape", [(30 * 22050,), (3, 4 * 22050), (1, 1025), (40, 22050)])
def test_the_blocks_give_torch_stfts_numbers_bit_for_bit(
    config: FrontEndConfig, shape: tuple[int, ...]
) -> None:
    """On one thread a block of frames at a time (a 30-s clip is some 40 blocks; a batch of
    40, blocks of `MIN_BLOCK_FRAMES`), on several the whole clip at once: either way the
    numbers of one `torch.stft` over the whole clip on as many threads."""
    module = LogMel(config)
    waveform = torch.from_numpy(
        np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 0.3
    )
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            whole = _whole_clip_log_mel(module, waveform)
            n_frames = whole.shape[-1]
            step = module._block_frames(waveform.reshape(whole.shape[0], -1), n_frames)
            assert step == n_frames if n_threads > 1 else step < n_frames or n_frames < 30
            blocks = module(waveform)
            assert blocks.shape == whole.shape and torch.equal(blocks, whole)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("n_samples", [513, 1024, 2048, 4096 + 17, 30 * 22050])
def test_centred_frames_are_the_reflect_padded_framing_without_padding_the_clip(
    n_samples: int,
) -> None:
    """Every run of frames (at either edge, both at once, inside, a clip a whole number of
    hops long) holds the samples of the padded clip's frames; fewer samples than half a
    frame are refused, as reflect padding refuses them."""
    n_fft, hop = 1024, 512
    batch = torch.from_numpy(np.random.default_rng(4).standard_normal((2, n_samples)).astype("f4"))
    padded = F.pad(batch[:, None], (n_fft // 2, n_fft // 2), mode="reflect")[:, 0]
    expected = padded.unfold(-1, n_fft, hop)
    n_frames = expected.shape[1]
    runs = {(0, n_frames), (0, 1), (n_frames - 1, n_frames), (n_frames // 2, n_frames // 2 + 1)}
    runs |= {(start, min(start + 8, n_frames)) for start in range(0, n_frames, 8)}
    for start, stop in runs:
        assert torch.equal(centred_frames(batch, start, stop, n_fft, hop), expected[:, start:stop])
    with pytest.raises(ValueError, match="too few"):
        centred_frames(batch[:, :512], 0, 1, n_fft, hop)


def test_the_later_front_end_fields_keep_old_fingerprints_and_refuse_unknown_values() -> None:
    """Caches and checkpoints made before the mel scale, norm and log compression were
    fields keep their folder and compare equal; other values are other front ends."""
    legacy = {
        k: v
        for k, v in FRONT_END.to_dict().items()
        if k not in ("mel_scale", "mel_norm", "log_compression", "representation")
    }
    assert FrontEndConfig.from_dict(legacy) == FRONT_END
    assert FRONT_END.fingerprint()[:12] == "14b0448d5836"  # as before the fields
    assert FrontEndConfig(mel_scale="slaney").fingerprint() != FRONT_END.fingerprint()
    waveform = FrontEndConfig(representation="waveform", n_mels=1, hop_length=1)
    assert waveform.fingerprint() != FRONT_END.fingerprint()
    fields = (("mel_scale", "bark"), ("mel_norm", "l2"), ("log_compression", "db"))
    for field, value in (*fields, ("representation", "chroma")):
        with pytest.raises(FrontEndMismatchError, match="unknown"):
            FrontEndConfig(**{field: value})


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
    with pytest.raises(ValueError, match="unknown mel norm"):
        mel_filterbank(22050, 1024, 128, 0.0, 11025.0, norm="l2")
    with pytest.raises(ValueError, match="must be positive"):
        mel_filterbank(22050, 1024, 0, 0.0, 11025.0)


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


def test_the_power_spectrum_is_the_squared_magnitude() -> None:
    generator = torch.Generator().manual_seed(0)
    spectrum = torch.complex(
        torch.randn(4, 29, 513, generator=generator), torch.randn(4, 29, 513, generator=generator)
    ) * torch.logspace(-4, 3, 513)
    power = power_spectrum(spectrum)
    assert power.dtype == torch.float32 and power.shape == spectrum.shape
    torch.testing.assert_close(power, spectrum.abs().pow(2.0), rtol=3e-7, atol=0.0)
