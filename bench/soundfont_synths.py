"""Which SoundFont player renders the world: tinysoundfont against pyfluidsynth.

Loads Debian's FluidR3_GM in each, renders the same 12-s arrangement (piano chords, a
fingered bass, a standard kit on channel 10; 120 bpm) at the world's 22.05 kHz three times
with a reset and a flush between, and prints the load time, the best rendering time (as a
multiple of real time) and whether the renderings are identical to the sample. pyfluidsynth
needs Debian's libfluidsynth3 and `pip install pyfluidsynth` (not a dependency: the world
uses tinysoundfont); it is skipped when missing.

    .venv/bin/python bench/soundfont_synths.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from world.soundfont import soundfont_path

SAMPLE_RATE, SECONDS, REPEATS = 22050, 12.0, 3
Event = tuple[int, bool, int, int, int]  # sample, note on, channel, key, velocity


def arrangement() -> list[Event]:
    """Note-on and note-off events of the 12-s test arrangement, in time order."""
    rng = np.random.default_rng(0)
    notes = []
    for beat in range(int(SECONDS * 2)):
        t = beat * 0.5
        notes += [(t, 0, key + int(rng.integers(-2, 3)), 80, 0.45) for key in (60, 64, 67)]
        notes.append((t, 1, 36 + int(rng.integers(0, 5)), 100, 0.4))
        notes += [(t, 9, 36 if beat % 2 == 0 else 38, 110, 0.1), (t, 9, 42, 70, 0.1)]
        notes.append((t + 0.25, 9, 42, 60, 0.1))
    events = [(round(t * SAMPLE_RATE), True, c, k, v) for t, c, k, v, _ in notes]
    events += [(round((t + d) * SAMPLE_RATE), False, c, k, 0) for t, c, k, _, d in notes]
    return sorted(events, key=lambda e: (e[0], e[1]))


def play(
    events: list[Event],
    generate: Callable[[int], np.ndarray],
    note_on: Callable[[int, int, int], object],
    note_off: Callable[[int, int], object],
) -> np.ndarray:
    out, now = [], 0
    for at, on, channel, key, velocity in events:
        if at > now:
            out.append(generate(at - now))
            now = at
        note_on(channel, key, velocity) if on else note_off(channel, key)
    out.append(generate(int(SECONDS * SAMPLE_RATE) - now))
    return np.concatenate(out)


def tinysoundfont_runs(events: list[Event]) -> tuple[float, list[tuple[float, np.ndarray]]]:
    import tinysoundfont

    started = time.perf_counter()
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont_path()))
    load = time.perf_counter() - started
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        synth.soundfonts[sfid].reset()
        synth.generate_simple(SAMPLE_RATE // 4)
        synth.program_select(0, sfid, 0, 0)
        synth.program_select(1, sfid, 0, 33)
        synth.program_select(9, sfid, 128, 0, is_drums=True)
        samples = play(
            events,
            lambda n: np.frombuffer(synth.generate_simple(n), np.float32),
            synth.noteon,
            synth.noteoff,
        )
        runs.append((time.perf_counter() - started, samples))
    return load, runs


def fluidsynth_runs(events: list[Event]) -> tuple[float, list[tuple[float, np.ndarray]]]:
    import fluidsynth

    started = time.perf_counter()
    options = {"synth.reverb.active": 0, "synth.chorus.active": 0}
    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE), **options)
    sfid = synth.sfload(str(soundfont_path()))
    load = time.perf_counter() - started
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        synth.system_reset()
        synth.get_samples(SAMPLE_RATE // 4)
        synth.program_select(0, sfid, 0, 0)
        synth.program_select(1, sfid, 0, 33)
        synth.program_select(9, sfid, 128, 0)
        samples = play(events, synth.get_samples, synth.noteon, synth.noteoff)
        runs.append((time.perf_counter() - started, samples))
    return load, runs


def main() -> None:
    events = arrangement()
    for name, runner in (("tinysoundfont", tinysoundfont_runs), ("pyfluidsynth", fluidsynth_runs)):
        try:
            load, runs = runner(events)
        except ImportError as error:
            print(f"{name}: not installed ({error})")
            continue
        best = min(seconds for seconds, _ in runs)
        same = all(np.array_equal(runs[0][1], samples) for _, samples in runs[1:])
        print(
            f"{name:14} load {load:5.2f} s  render {SECONDS:g} s in {best * 1e3:5.0f} ms"
            f" ({SECONDS / best:4.0f}x real time)  {runs[0][1].dtype}"
            f"  repeats identical: {same}"
        )


if __name__ == "__main__":
    main()
