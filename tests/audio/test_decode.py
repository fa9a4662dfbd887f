"""decode_audio on the real recordings and on hostile inputs made here."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import av
import numpy as np
import pytest

from audio.decode import DecodeLimits, decode_audio
from audio.errors import AudioError

SR = 22050

# Durations from tests/assets/audio/MANIFEST.md.
EXPECTED_SECONDS = {
    "vibe_ace.mp3": 8.0,
    "brahms_hungarian_dance_5.flac": 8.1,
    "lets_go_fishin.m4a": 8.0,
    "sugar_plum_fairy.wav": 8.1,
    "trumpet_loop.ogg": 5.3,
    "asc_game_theme.mp3": 8.0,
    "warzone_track.opus": 8.0,
    "humpback_whale.opus": 8.0,
    "speech_librispeech.ogg": 8.0,
    "robin_chirp.ogg": 2.7,
}


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / samples.size)


@pytest.mark.parametrize("file_name", sorted(EXPECTED_SECONDS))
def test_real_recordings_decode_to_mono_at_22050(audio_assets: Path, file_name: str) -> None:
    decoded = decode_audio(audio_assets / file_name)
    assert decoded.sample_rate == SR
    assert decoded.samples.ndim == 1 and decoded.samples.dtype == np.float32
    assert decoded.seconds == pytest.approx(EXPECTED_SECONDS[file_name], abs=0.1)
    assert not decoded.truncated
    assert np.isfinite(decoded.samples).all()
    assert 0.05 < np.abs(decoded.samples).max() < 1.5


def test_bytes_decode_like_the_file(audio_assets: Path) -> None:
    path = audio_assets / "trumpet_loop.ogg"
    from_bytes = decode_audio(path.read_bytes(), name="upload.ogg")
    np.testing.assert_array_equal(from_bytes.samples, decode_audio(path).samples)


def expect_error(code: str, source: str | Path | bytes, **kwargs: object) -> AudioError:
    with pytest.raises(AudioError) as caught:
        decode_audio(source, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value
    return caught.value


def test_empty_input(tmp_path: Path) -> None:
    empty = tmp_path / "nothing.mp3"
    empty.write_bytes(b"")
    assert "nothing.mp3" in str(expect_error("empty", empty))
    assert "upload" in str(expect_error("empty", b"", name="upload"))


def test_header_without_samples_is_undecodable(wav, audio_assets: Path) -> None:
    expect_error("undecodable", wav("header_only.wav", np.zeros(0), 44100))
    flac = (audio_assets / "brahms_hungarian_dance_5.flac").read_bytes()
    expect_error("undecodable", flac[:64] + bytes(range(256)) * 20)


def test_truncated_mp3_header_is_undecodable(audio_assets: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp3"
    cut.write_bytes((audio_assets / "vibe_ace.mp3").read_bytes()[:200])
    error = expect_error("undecodable", cut)
    assert "cut.mp3" in str(error)
    assert isinstance(error.__cause__, av.FFmpegError)  # wrapped, not leaked


def test_cut_off_mp3_gives_what_decodes(audio_assets: Path) -> None:
    whole = (audio_assets / "vibe_ace.mp3").read_bytes()
    decoded = decode_audio(whole[: len(whole) // 3])
    assert decoded.seconds == pytest.approx(8.0 / 3, abs=0.3)


def test_text_and_garbage_are_undecodable(tmp_path: Path) -> None:
    text = tmp_path / "lyrics.mp3"
    text.write_text("la la la, this is not a song\n" * 40)
    assert "lyrics.mp3" in str(expect_error("undecodable", text))
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    expect_error("undecodable", noise)


@pytest.mark.parametrize("file_name", ["trumpet_loop.ogg", "asc_game_theme.mp3"])
def test_damaged_files_raise_only_audio_errors(audio_assets: Path, file_name: str) -> None:
    """Cut, overwritten or scrambled bytes either decode or raise AudioError, nothing else."""
    data = np.frombuffer((audio_assets / file_name).read_bytes()[:100_000], np.uint8)
    rng = np.random.default_rng(3)
    for trial in range(12):
        damaged = data.copy()
        if trial % 3 == 0:
            damaged = damaged[: rng.integers(1, damaged.size)]
        elif trial % 3 == 1:
            damaged[rng.integers(0, damaged.size, 50)] = rng.integers(0, 256, 50)
        else:
            damaged = np.concatenate([damaged[:64], rng.integers(0, 256, 5000, dtype=np.uint8)])
        try:
            decode_audio(damaged.tobytes())
        except AudioError:
            pass


def test_playlist_is_not_followed(audio_assets: Path) -> None:
    playlist = f"ffconcat version 1.0\nfile '{audio_assets / 'vibe_ace.mp3'}'\n"
    expect_error("undecodable", playlist.encode())


def test_short_clip_decodes(wav) -> None:
    decoded = decode_audio(wav("blip.wav", np.full(8820, 0.3), 44100))
    assert decoded.samples.size == pytest.approx(0.2 * SR, abs=2)


def test_eight_channels_at_96k_average_to_mono(wav) -> None:
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * 96000) / 96000)
    decoded = decode_audio(wav("surround.wav", np.repeat(tone[:, None], 8, axis=1), 96000))
    assert decoded.samples.ndim == 1 and decoded.seconds == pytest.approx(2.0, abs=0.01)
    assert np.abs(decoded.samples).max() == pytest.approx(0.5, abs=0.01)
    assert dominant_hz(decoded.samples, SR) == pytest.approx(1000, abs=1)


def test_stereo_is_the_mean_of_its_channels(wav) -> None:
    """FFmpeg's own downmix would add the channels at -3 dB (peak 0.35 here)."""
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    left_only = np.stack([tone, np.zeros_like(tone)], axis=1)
    decoded = decode_audio(wav("left.wav", left_only, 44100))
    assert np.abs(decoded.samples).max() == pytest.approx(0.25, abs=0.005)


@pytest.mark.parametrize(
    ("codec", "sample_format", "dtype"),
    [
        ("pcm_u8", "u8", np.uint8),
        ("pcm_s16le", "s16", np.int16),
        ("pcm_s32le", "s32", np.int32),
        ("pcm_f32le", "flt", np.float32),
        ("pcm_f64le", "dbl", np.float64),
    ],
)
def test_every_sample_format_scales_to_full_scale(codec: str, sample_format: str, dtype) -> None:
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    if np.dtype(dtype).kind == "f":
        pcm = tone.astype(dtype)
    elif dtype is np.uint8:
        pcm = np.round(tone * 128 + 128).astype(dtype)
    else:
        pcm = np.round(tone * 2.0 ** (8 * np.dtype(dtype).itemsize - 1)).astype(dtype)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream(codec, rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None], format=sample_format, layout="mono")
        frame.sample_rate = SR
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    decoded = decode_audio(buffer.getvalue())
    np.testing.assert_allclose(decoded.samples, tone, atol=1 / 100)


def test_two_hour_file_stops_at_max_seconds(wav) -> None:
    rate = 8000
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, 30 * rate)
    long_file = wav("two_hours.wav", noise, rate, total_frames=2 * 3600 * rate)
    decoded = decode_audio(long_file, limits=DecodeLimits(max_seconds=10.0))
    assert decoded.truncated  # the header promises two hours; decoding stopped at ten seconds
    assert decoded.samples.size == 10 * SR


def test_over_max_bytes_is_refused(audio_assets: Path) -> None:
    limits = DecodeLimits(max_bytes=1000)
    path = audio_assets / "robin_chirp.ogg"
    assert "robin_chirp.ogg" in str(expect_error("too_large", path, limits=limits))
    expect_error("too_large", path.read_bytes(), limits=limits)


def test_audio_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(AudioError("silent", "a.wav", "silent")))
    assert (error.code, str(error)) == ("silent", "a.wav: silent")
    with pytest.raises(ValueError, match="unknown"):
        AudioError("loud", "a.wav", "too loud")  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["float-wav-nan", "float-wav-inf"])
def test_non_finite_samples_are_refused_naming_the_file(case: str) -> None:
    from tests.hostile_audio import hostile_corpus

    hostile = hostile_corpus()[case]
    with pytest.raises(AudioError, match=f"^{hostile.filename}: .*NaN or infinite") as caught:
        decode_audio(hostile.data, name=hostile.filename)
    assert caught.value.code == "invalid_samples"


@pytest.mark.parametrize(("gain", "channels"), [(2.0, 1), (1e30, 1), (1e38, 2)])
def test_samples_above_full_scale_are_peak_normalised(gain: float, channels: int) -> None:
    """+6 dBFS, 1e30 (whose power overflows float32) and 1e38 in stereo all come out as the
    same recording scaled to peak at full scale; the decoder says it did so."""
    from tests.hostile_audio import tone, wav_bytes

    music = np.repeat(tone(3.5)[:, None], channels, axis=1)
    reference = decode_audio(wav_bytes(music, SR, float32=True))
    assert not reference.normalised and reference.peak < 1.0
    hot = decode_audio(wav_bytes(music * gain, SR, float32=True))
    assert hot.normalised
    assert hot.peak == pytest.approx(reference.peak * gain, rel=1e-5)
    assert hot.peak_dbfs == pytest.approx(20 * np.log10(reference.peak * gain), rel=1e-5)
    assert np.isfinite(hot.samples).all()
    np.testing.assert_allclose(hot.samples, reference.samples / reference.peak, atol=1e-5)


@pytest.mark.parametrize(
    ("container", "codec", "demuxer", "extension"),
    [
        ("wav", "pcm_s16le", "wav", "wav"),
        ("flac", "flac", "flac", "flac"),
        ("ogg", "libopus", "ogg", "ogg"),
        ("mp3", "libmp3lame", "mp3", "mp3"),
        ("mp4", "aac", "mov", "m4a"),
        ("adts", "aac", "aac", "m4a"),
    ],
)
def test_the_container_read_names_the_file_extension(
    container: str, codec: str, demuxer: str, extension: str
) -> None:
    """What the decoder opened, not the upload's name or leading bytes, says how to file it."""
    from corpus.dataset import AUDIO_EXTENSIONS
    from tests.hostile_audio import encoded, tone

    rate = 48000 if codec == "libopus" else 44100
    audio = encoded(container, codec, tone(1.0, rate, amplitude=0.3), rate)
    decoded = decode_audio(audio, name="upload")
    assert (decoded.container, decoded.extension) == (demuxer, extension)
    assert decoded.extension in AUDIO_EXTENSIONS
