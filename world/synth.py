"""Synthesis: render a song's score to a stereo 22.05 kHz clip with numpy.

Every note is rendered whole, as arrays: a band-limited wavetable built per note from the
instrument's partial amplitudes (tilt, even/odd balance, body resonances or a singer's
vowel formants), cross-faded from bright to dark for plucked sounds, with vibrato,
tremolo, breath noise and an ADSR envelope; mallets sum inharmonic partials. Drums are
synthesised once per song from the kit (pitch-swept kick, tone + noise snare, metallic
hats) and placed at their hits. Stems are balanced, distorted, pumped by the kick,
panned, sent to a noise reverb, filtered by the song's brightness, compressed by its
energy and peak-normalised with headroom.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from world.catalogue import Artist, Song
from world.score import PARTS, Note, Score, compose
from world.style import GENRES, INSTRUMENTS, KITS, VOWELS, Instrument

SAMPLE_RATE = 22050
_TABLE = 2048
_INDEX_SHIFT = 32 - 11  # a 32-bit phase's top 11 bits index the 2048-sample table
_FRAC_MASK = (1 << _INDEX_SHIFT) - 1
_NYQUIST_GUARD = 0.45 * SAMPLE_RATE  # highest partial rendered, Hz
_DARKENING = 2.2  # extra tilt of a plucked note's decayed spectrum
STEM_LEVEL = {"lead": 0.16, "solo": 0.16, "comp": 0.11, "bass": 0.15, "pad": 0.07}
_PUMPED = ("pad", "bass", "comp")
PAN = {"lead": 0.0, "solo": 0.2, "comp": -1.0, "bass": 0.0, "pad": 0.0}
_DRUM_PAN = {
    "hat": 0.35,
    "open": 0.35,
    "ride": -0.35,
    "crash": -0.25,
    "shaker": 0.5,
    "tambourine": -0.5,
}


@functools.lru_cache(maxsize=256)
def _butter(order: int, cutoff: float | tuple[float, float], kind: str) -> np.ndarray:
    """Second-order sections of a Butterworth filter at the world's sample rate (memoised)."""
    return signal.butter(order, cutoff, kind, fs=SAMPLE_RATE, output="sos")


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _partial_amplitudes(
    instrument: Instrument, f0: float, tilt: float, formants: tuple[tuple[float, float, float], ...]
) -> np.ndarray:
    """Amplitudes of the harmonics 1..K of a note at f0 (K keeps them below Nyquist)."""
    n = np.arange(1, max(1, int(_NYQUIST_GUARD // f0)) + 1, dtype=np.float64)
    amplitudes = n**-tilt
    amplitudes[1::2] *= instrument.even
    freqs = n * f0
    if instrument.family == "voice":
        shape = sum(g * np.exp(-0.5 * ((freqs - f) / w) ** 2) for f, w, g in formants)
        amplitudes = amplitudes * (0.03 + shape)
    elif formants:
        amplitudes = amplitudes * (
            1.0 + sum(g * np.exp(-0.5 * ((freqs - f) / w) ** 2) for f, w, g in formants)
        )
    return amplitudes / np.sqrt(np.sum(amplitudes**2))


Wavetable = tuple[np.ndarray, np.ndarray]  # one period (_TABLE,) float32, and its slope


def _wavetable(amplitudes: np.ndarray, phases: np.ndarray) -> Wavetable:
    """One period of the waveform (`_TABLE` samples) and its slope to the next sample."""
    spectrum = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
    k = min(len(amplitudes), _TABLE // 2 - 1)
    spectrum[1 : k + 1] = amplitudes[:k] * np.exp(1j * phases[:k]) * (_TABLE / 2)
    table = np.fft.irfft(spectrum, _TABLE).astype(np.float32)
    return table, np.roll(table, -1) - table


def _lookup(wavetable: Wavetable, index: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """The wavetable read with linear interpolation at table positions `index` + `frac`."""
    table, slope = wavetable
    out = np.take(slope, index)
    out *= frac
    out += np.take(table, index)
    return out


def _phase_positions(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table index and fraction from a 32-bit fixed-point phase (one cycle = 2**32)."""
    index = (phase >> _INDEX_SHIFT).astype(np.intp)
    frac = (phase & _FRAC_MASK).astype(np.float32)
    frac *= np.float32(1.0 / (_FRAC_MASK + 1))
    return index, frac


def _envelope(instrument: Instrument, length: int, duration: float) -> np.ndarray:
    """ADSR of `length` samples: linear attack, exponential decay to the sustain level,
    exponential release after `duration` seconds."""
    attack = min(max(1, int(instrument.attack * SAMPLE_RATE)), length)
    level = np.empty(length, dtype=np.float32)
    level[:attack] = np.arange(attack, dtype=np.float32) / np.float32(attack)
    tail = np.arange(length - attack, dtype=np.float32) / np.float32(instrument.decay * SAMPLE_RATE)
    level[attack:] = instrument.sustain + (1.0 - instrument.sustain) * np.exp(-tail)
    off = min(int(duration * SAMPLE_RATE), length)
    after = np.arange(length - off, dtype=np.float32) / np.float32(instrument.release * SAMPLE_RATE)
    level[off:] *= np.exp(-after)
    return level


class _Renderer:
    """Renders one song; the audio's random parts come from the song's seed, stream 1."""

    def __init__(self, song: Song, artist: Artist, score: Score, n_samples: int) -> None:
        self.song, self.artist, self.score = song, artist, score
        self.genre = GENRES[song.genre]
        self.rng = np.random.default_rng([song.seed, 1])
        self.n = n_samples
        self._breath: np.ndarray | None = None
        self.tables: dict[tuple[str, float, float, int], tuple[Wavetable, Wavetable | None]] = {}

    @property
    def breath(self) -> np.ndarray:
        """Band-limited noise under the whole clip for breath, bow and pick noise (made once)."""
        if self._breath is None:
            self._breath = self._band_noise(self.n, 800.0, 6000.0)
        return self._breath

    def _band_noise(self, n: int, low: float, high: float) -> np.ndarray:
        sos = _butter(2, (low, min(high, 0.95 * SAMPLE_RATE / 2)), "bandpass")
        noise = self.rng.standard_normal(n).astype(np.float32)
        return signal.sosfilt(sos, noise).astype(np.float32)

    # -- pitched parts ---------------------------------------------------------------------
    def wavetables(
        self, instrument: Instrument, note: Note, f0: float
    ) -> tuple[Wavetable, Wavetable | None]:
        """The bright and (for plucked sounds) dark wavetables of a note, memoised per song.

        Louder notes are brighter; the tilt is rounded to 0.1 so that repeated notes share
        their tables.
        """
        tilt = round(
            instrument.tilt
            + self.artist.tilt
            + 0.8 * (0.5 - self.song.brightness)
            - 0.5 * (note.velocity - 0.6),
            1,
        )
        vowel = note.vowel if instrument.family == "voice" else 0
        key = (instrument.name, note.pitch, tilt, vowel)
        if key not in self.tables:
            formants = instrument.formants
            if instrument.family == "voice":
                scale = self.artist.formant_scale
                formants = tuple(
                    (f * scale, 90.0 + 0.06 * f, g)
                    for f, g in zip(VOWELS[vowel], (1.0, 0.7, 0.35), strict=True)
                )
            phases = self.rng.uniform(0.0, 2.0 * np.pi, size=_TABLE // 2)
            bright = _wavetable(_partial_amplitudes(instrument, f0, tilt, formants), phases)
            dark = (
                _wavetable(_partial_amplitudes(instrument, f0, tilt + _DARKENING, formants), phases)
                if instrument.pluck
                else None
            )
            self.tables[key] = (bright, dark)
        return self.tables[key]

    def note(self, instrument: Instrument, note: Note, start: int) -> np.ndarray:
        """Samples of one note (all voices of it), starting at sample `start` of the clip."""
        seconds = note.duration + 3.0 * instrument.release
        if not instrument.sustain:
            seconds = min(seconds, instrument.attack + 5.0 * instrument.decay)
        length = min(int(seconds * SAMPLE_RATE), self.n - start)
        t = np.arange(length, dtype=np.float32) / np.float32(SAMPLE_RATE)
        f0 = _midi_hz(note.pitch)
        env = _envelope(instrument, length, note.duration) * np.float32(note.velocity)
        if instrument.partials:
            return self._mallet(instrument, t, f0, env)
        bright, dark = self.wavetables(instrument, note, f0)
        fading = np.exp(-t / np.float32(instrument.pluck)) if instrument.pluck else None
        depth = instrument.vibrato * self.artist.vibrato
        modulation = None
        if depth or instrument.glide:
            ramp = np.minimum(t / np.float32(0.35), np.float32(1.0))
            modulation = 1.0 + depth * ramp * np.sin(
                np.float32(2.0 * np.pi * instrument.vibrato_rate) * t
            )
            if instrument.glide:
                modulation += instrument.glide * np.exp(-t / np.float32(0.06))
        out = np.zeros(length, dtype=np.float32)
        for v in range(instrument.voices):
            cents = (v - (instrument.voices - 1) / 2.0) * instrument.detune
            increment = f0 * 2.0 ** (cents / 1200.0) / SAMPLE_RATE * 2.0**32
            offset = np.uint32(self.rng.integers(2**32))
            if modulation is None:
                phase = np.arange(length, dtype=np.uint32) * np.uint32(increment) + offset
            else:
                steps = (modulation * np.float32(increment)).astype(np.uint32)
                phase = np.cumsum(steps, dtype=np.uint32) + offset
            index, frac = _phase_positions(phase)
            wave = _lookup(bright, index, frac)
            if dark is not None and fading is not None:
                dull = _lookup(dark, index, frac)
                wave -= dull
                wave *= fading
                wave += dull
            out += wave
        out *= env / np.float32(np.sqrt(instrument.voices))
        if instrument.tremolo:
            out *= 1.0 - instrument.tremolo * (
                0.5 + 0.5 * np.sin(np.float32(2.0 * np.pi * 4.5) * t)
            )
        if instrument.breath:
            attack_noise = 0.4 + 0.6 * np.exp(-t / np.float32(0.04))
            out += (
                np.float32(instrument.breath * 3.0)
                * env
                * attack_noise
                * self.breath[start : start + length]
            )
        return out

    def _mallet(
        self, instrument: Instrument, t: np.ndarray, f0: float, env: np.ndarray
    ) -> np.ndarray:
        """Inharmonic partials, the upper ones dying faster (vibraphone, marimba, bells)."""
        ratios = np.array([r for r in instrument.partials if r * f0 < _NYQUIST_GUARD])
        amplitudes = ratios ** (-instrument.tilt / 2.0)
        decays = np.exp(
            -t[None, :] * (ratios[:, None] ** 0.7 / instrument.decay).astype(np.float32)
        )
        cycles = (f0 * ratios[:, None] * t[None, :].astype(np.float64)) % 1.0
        sines = np.sin(2.0 * np.pi * cycles + self.rng.uniform(0.0, 2.0 * np.pi)).astype(np.float32)
        out = (amplitudes[:, None].astype(np.float32) * decays * sines).sum(axis=0) * env
        if instrument.tremolo:
            out *= 1.0 - instrument.tremolo * (
                0.5 + 0.5 * np.sin(np.float32(2.0 * np.pi * 5.0) * t)
            )
        return out

    def stem(self, part: str) -> np.ndarray:
        """The mono stem of one part, distorted if its instrument is."""
        instrument = INSTRUMENTS[self.score.instrument(self.song, part)]
        out = np.zeros(self.n, dtype=np.float32)
        for note in self.score.notes[part]:
            start = int(round(note.start * SAMPLE_RATE))
            if start >= self.n:
                continue
            samples = self.note(instrument, note, start)
            out[start : start + len(samples)] += samples
        if instrument.drive:
            rms = np.sqrt(np.mean(out**2)) + 1e-9
            drive = instrument.drive * (0.6 + 0.8 * self.song.energy)
            out = np.tanh(drive * 0.3 * out / rms) / np.tanh(drive * 0.3)
            if instrument.family == "distorted":
                out = signal.sosfilt(_butter(2, 4500.0, "lowpass"), out).astype(np.float32)
        return out

    # -- drums -----------------------------------------------------------------------------
    def drum_sound(self, voice: str) -> np.ndarray:
        """One drum sound of the song's kit, tuned by the artist (float32, peak about 1)."""
        kit, tune = KITS[self.genre.kit], self.artist.drum_tune
        if voice == "kick":
            t = _seconds(1.0)
            f_start, f_end = kit.kick_hz[0] * tune, kit.kick_hz[1] * tune
            sweep = f_end + (f_start - f_end) * np.exp(-t / 0.04)
            sound = np.sin(2.0 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.exp(
                -t / kit.kick_decay
            )
            click = self._band_noise(200, 1500.0, 8000.0) * np.exp(-t[:200] / 0.002)
            sound[:200] += kit.kick_click * click
        elif voice == "snare" and kit.brushes:
            t = _seconds(0.5)
            sound = (
                0.6
                * self._band_noise(len(t), 300.0, 5000.0)
                * np.minimum(t / 0.02, 1.0)
                * np.exp(-t / 0.12)
            )
        elif voice == "snare":
            t = _seconds(0.5)
            sound = 0.5 * np.sin(2.0 * np.pi * kit.snare_hz * tune * t) * np.exp(
                -t / 0.05
            ) + 2.5 * self._band_noise(len(t), *kit.snare_band) * np.exp(-t / kit.snare_decay)
        elif voice == "clap":
            t = _seconds(0.5)
            bursts = sum(
                np.exp(-np.clip(t - d, 0.0, None) / 0.004) * (t >= d) for d in (0.0, 0.011, 0.022)
            )
            sound = (
                3.0 * self._band_noise(len(t), 900.0, 3500.0) * (bursts + 0.4 * np.exp(-t / 0.12))
            )
        elif voice in ("shaker", "tambourine"):
            t = _seconds(0.25)
            sound = (
                1.5
                * self._band_noise(len(t), 4000.0, 10000.0)
                * np.minimum(t / 0.015, 1.0)
                * np.exp(-t / 0.05)
            )
            if voice == "tambourine":
                sound += 0.3 * _metallic(t, tune) * np.exp(-t / 0.1)
        else:  # cymbals: metallic square partials and/or high noise
            length, decay, low, gain = {
                "hat": (0.3, kit.hat_decay, 7000.0, 0.6),
                "open": (1.0, kit.open_decay, 6000.0, 0.5),
                "ride": (1.6, 0.9, 3000.0, 0.35),
                "crash": (2.0, 1.1, 3000.0, 0.6),
            }[voice]
            t = _seconds(length)
            body = 3.0 * (1.0 - kit.metallic) * self._band_noise(len(t), low, 10500.0)
            if kit.metallic or voice == "ride":
                body += (kit.metallic + (0.3 if voice == "ride" else 0.0)) * _metallic(t, tune)
            sound = gain * body * np.exp(-t / decay)
        return sound.astype(np.float32)

    def drums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The drum bus as left and right channels, and the kick's hit samples (for the pump)."""
        left = np.zeros(self.n, dtype=np.float32)
        right = np.zeros(self.n, dtype=np.float32)
        kicks = np.zeros(0, dtype=np.int64)
        for voice, hits in sorted(self.score.hits.items()):
            sound = self.drum_sound(voice)
            track = np.zeros(self.n, dtype=np.float32)
            starts = np.array([int(round(time * SAMPLE_RATE)) for time, _ in hits])
            for start, (_, velocity) in zip(starts, hits, strict=True):
                if start < self.n:
                    piece = sound[: self.n - start]
                    track[start : start + len(piece)] += np.float32(velocity**1.5) * piece
            if voice == "kick":
                kicks = np.sort(starts)
            gain_left, gain_right = pan_gains(_DRUM_PAN.get(voice, 0.0))
            left += gain_left * track
            right += gain_right * track
        return left, right, kicks

    # -- the mix ---------------------------------------------------------------------------
    def mix(self) -> np.ndarray:
        """The stereo clip (n, 2) float32, before the cut to the clip's window."""
        energy = self.song.energy
        left = np.zeros(self.n, dtype=np.float32)
        right = np.zeros(self.n, dtype=np.float32)
        send = np.zeros(self.n, dtype=np.float32)
        duck = None
        if self.score.hits:
            drums_left, drums_right, kicks = self.drums()
            rms = np.sqrt(0.5 * (np.mean(drums_left**2) + np.mean(drums_right**2))) + 1e-9
            level = np.float32(0.2 * (0.7 + 0.6 * energy) / rms)
            left += level * drums_left
            right += level * drums_right
            send += np.float32(0.075) * level * (drums_left + drums_right)
            if self.genre.sidechain and len(kicks):
                duck = pump(self.n, kicks, self.genre.sidechain)
        width = self.artist.width
        for part in PARTS:
            if not self.score.notes[part]:
                continue
            stem = balance(self.stem(part), part, duck)
            if part == "pad":  # widened by a short delay on one side
                delay = int(0.015 * SAMPLE_RATE)
                left += stem
                right[delay:] += np.float32(1.0 - 0.5 * width) * stem[:-delay]
                right[delay:] += np.float32(0.5 * width) * stem[delay:]
            else:
                gain_left, gain_right = pan_gains(PAN[part] * width)
                left += gain_left * stem
                right += gain_right * stem
            send += np.float32(0.5 if part == "pad" else 0.3) * stem
        out = np.stack([left, right], axis=1) + self.reverb(send)
        cutoff = min(2500.0 * 4.0**self.song.brightness, 0.47 * SAMPLE_RATE)
        sos = signal.butter(2, cutoff, "lowpass", fs=SAMPLE_RATE, output="sos")
        out = signal.sosfilt(sos, out, axis=0).astype(np.float32)
        drive = 1.0 + 2.5 * energy
        out = np.tanh(np.float32(drive) / (np.max(np.abs(out)) + 1e-9) * out) / np.tanh(drive)
        return out.astype(np.float32)

    def reverb(self, send: np.ndarray) -> np.ndarray:
        """Stereo reverb: decorrelated exponentially decaying noise, darker as it decays."""
        decay = self.artist.reverb
        t = np.arange(int(min(decay, 2.0) * SAMPLE_RATE)) / SAMPLE_RATE
        tails = self.rng.standard_normal((len(t), 2)) * np.exp(-6.9 * t / decay)[:, None]
        tails = signal.sosfilt(_butter(1, 3500.0, "lowpass"), tails, axis=0)
        tails /= np.sqrt(np.sum(tails**2, axis=0, keepdims=True))
        wet = 0.5 if self.genre.name in ("ambient", "classical") else 0.25
        return wet * signal.fftconvolve(send[:, None], tails.astype(np.float32), axes=0)[: self.n]


def _seconds(length: float) -> np.ndarray:
    return np.arange(int(length * SAMPLE_RATE), dtype=np.float32) / np.float32(SAMPLE_RATE)


def _metallic(t: np.ndarray, tune: float) -> np.ndarray:
    """Six detuned square waves, high-passed: the 808's cymbal and hi-hat metal."""
    tones = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * 1.7 * tune
    cycles = (tones[:, None] * t[None, :].astype(np.float64)) % 1.0
    squares = np.where(cycles < 0.5, 1.0, -1.0).sum(axis=0)
    return (signal.sosfilt(_butter(2, 6000.0, "highpass"), squares) / 6.0).astype(np.float32)


def balance(stem: np.ndarray, part: str, duck: np.ndarray | None) -> np.ndarray:
    """A part's stem scaled in place to the part's RMS level and, for the parts the kick
    pumps, ducked by `duck` (a gain broadcasting against the stem, or None)."""
    stem *= np.float32(STEM_LEVEL[part] / (np.sqrt(np.mean(stem**2)) + 1e-9))
    if duck is not None and part in _PUMPED:
        stem *= duck
    return stem


def pan_gains(pan: float) -> tuple[np.float32, np.float32]:
    """Equal-power (left, right) gains for a pan position in [-1, 1], 1 each in the centre."""
    angle = (pan + 1.0) * np.pi / 4.0
    return np.float32(np.sqrt(2.0) * np.cos(angle)), np.float32(np.sqrt(2.0) * np.sin(angle))


def pump(n: int, kicks: np.ndarray, depth: float) -> np.ndarray:
    """Gain that dips on every kick and recovers in ~0.15 s (sidechain compression)."""
    last = np.full(n, -10 * SAMPLE_RATE, dtype=np.int64)
    inside = kicks[kicks < n]
    last[inside] = inside
    since = np.arange(n) - np.maximum.accumulate(last)
    return (1.0 - depth * np.exp(-since / (0.15 * SAMPLE_RATE))).astype(np.float32)


def finish_clip(mix: np.ndarray, begin: int, rng: np.random.Generator) -> np.ndarray:
    """The clip cut from a song's (n, 2) mix at sample `begin`, as a shop's preview is cut.

    Peaks sit 2 to 4 dB below full scale (headroom for lossy codecs); 15 ms fades at both
    ends.
    """
    clip = mix[begin:]
    fade = int(0.015 * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
    clip[:fade] *= ramp
    clip[-fade:] *= ramp[::-1]
    headroom = 10.0 ** (-rng.uniform(2.0, 4.0) / 20.0)
    clip *= headroom / (np.max(np.abs(clip)) + 1e-9)
    return clip.astype(np.float32)


def render_song(song: Song, artist: Artist, clip_seconds: float) -> tuple[np.ndarray, Score]:
    """Render a song's clip with the additive synthesizer: (round(clip_seconds * 22050), 2)
    float32 in [-1, 1] (see `finish_clip`), and its score."""
    score = compose(song, artist, clip_seconds)
    begin = int(round(score.offset * SAMPLE_RATE))
    n_clip = int(round(clip_seconds * SAMPLE_RATE))
    renderer = _Renderer(song, artist, score, begin + n_clip)
    return finish_clip(renderer.mix(), begin, renderer.rng), score
