"""The synthetic world: reproducible bytes, the dataset contract, and listening statistics
that look like a real service's (power-law activity, heavy-tailed plays, taste by genre)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from corpus.dataset import load_dataset
from world.catalogue import draw_catalogue
from world.general_midi import (
    DRUM_BANK,
    GM_DRUM_KEYS,
    GM_KITS,
    GM_PROGRAMS,
    SOUND_AXES,
    draw_production,
    production_sound,
)
from world.generate import TRUTH_FILE, WorldError, generate_world
from world.score import parse_chord
from world.soundfont import (
    SOUNDFONT_ENV,
    SOUNDFONT_PACKAGE,
    render_song_soundfont,
    soundfont_path,
)
from world.style import GENRES, INSTRUMENTS, KITS, PATTERNS
from world.synth import SAMPLE_RATE, render_song
from world.taste import (
    Listeners,
    SongFeatures,
    draw_listeners,
    draw_sound_taste,
    sample_listens,
)

TINY_SONGS, TINY_USERS, TINY_SECONDS = 120, 300, 6.0


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def mini_worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small worlds: seed 3 with one worker, seed 3 with two, seed 4."""
    worlds = {}
    for name, seed, workers in (("serial", 3, 1), ("pool", 3, 2), ("other", 4, 1)):
        out = tmp_path_factory.mktemp(name)
        generate_world(out, n_songs=16, n_users=40, clip_seconds=4.0, seed=seed, workers=workers)
        worlds[name] = out
    return worlds


@pytest.fixture(scope="module")
def truth(tiny_world: Path) -> dict:
    return json.loads((tiny_world / TRUTH_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def listens(tiny_world: Path):
    return load_dataset(tiny_world).listens


def test_same_seed_gives_the_same_bytes_whatever_the_workers(mini_worlds: dict[str, Path]) -> None:
    serial, pool = digests(mini_worlds["serial"]), digests(mini_worlds["pool"])
    assert len(serial) == 16 + 3
    assert serial == pool


def test_another_seed_gives_another_world(mini_worlds: dict[str, Path]) -> None:
    serial, other = digests(mini_worlds["serial"]), digests(mini_worlds["other"])
    for name in ("listens.tsv", "songs.csv", TRUTH_FILE):
        assert serial[name] != other[name]
    assert not set(serial.values()) & set(other.values())


def test_tiny_world_follows_the_dataset_contract(tiny_world: Path) -> None:
    dataset = load_dataset(tiny_world)
    assert len(dataset.songs) == TINY_SONGS
    assert dataset.n_users == TINY_USERS
    assert set(dataset.audio_paths) == set(dataset.song_ids)
    pairs = dataset.listens[["user_id", "song_id"]].astype(str)
    assert not pairs.duplicated().any()
    assert dataset.listens["play_count"].min() >= 1
    listened = dataset.listens["song_id"].nunique()
    assert listened >= 0.9 * TINY_SONGS
    with open(tiny_world / "songs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["song_id", "title", "artist"]
    assert any("," in field or '"' in field for row in rows[1:] for field in row[1:])
    assert [row[1:] for row in rows[1:]] == dataset.songs[["title", "artist"]].values.tolist()


def test_every_song_decodes_to_its_clip_length_in_a_mix_of_formats(tiny_world: Path) -> None:
    formats, rates, channels = set(), set(), set()
    for path in sorted((tiny_world / "audio").iterdir()):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            formats.add(path.suffix)
            rates.add(stream.rate)
            channels.add(stream.channels)
        assert samples / stream.rate == pytest.approx(TINY_SECONDS, abs=0.05), path.name
    assert len(formats) >= 5
    assert len(rates) >= 3
    assert channels == {1, 2}


def test_truth_describes_every_song_artist_and_user(tiny_world: Path, truth: dict) -> None:
    song_ids = {row["song_id"] for row in truth["songs"]}
    assert song_ids == set(load_dataset(tiny_world).song_ids)
    assert len(truth["users"]) == TINY_USERS
    assert len(truth["artists"]) == TINY_SONGS // 8
    song = truth["songs"][0]
    for key in (
        "genre",
        "artist",
        "tempo",
        "mode",
        "key",
        "energy",
        "lead",
        "comp",
        "bass",
        "families",
        "groove",
        "popularity",
        "sections",
        "format",
    ):
        assert key in song
    assert all((tiny_world / row["file"]).is_file() for row in truth["songs"])
    assert len({row["genre"] for row in truth["artists"]}) >= 5


def test_user_activity_is_power_law_like(listens) -> None:
    activity = listens.groupby("user_id", observed=True).size().to_numpy()
    assert activity.min() >= 5
    assert activity.max() >= 3 * np.median(activity)
    top_tenth = np.sort(activity)[::-1][: len(activity) // 10]
    assert top_tenth.sum() >= 0.25 * activity.sum()


def test_play_counts_are_heavy_tailed(listens) -> None:
    plays = listens["play_count"].to_numpy()
    assert np.mean(plays <= 3) >= 0.6
    assert plays.max() >= 20
    assert plays.mean() > np.median(plays)


def test_listens_concentrate_in_each_users_preferred_genres(listens, truth: dict) -> None:
    genre_of = {row["song_id"]: row["genre"] for row in truth["songs"]}
    favourite = {
        row["user_id"]: max(row["genre_affinity"], key=row["genre_affinity"].get)
        for row in truth["users"]
    }
    in_favourite = np.mean(
        [
            genre_of[s] == favourite[u]
            for u, s in zip(listens["user_id"], listens["song_id"], strict=True)
        ]
    )
    catalogue = [row["genre"] for row in truth["songs"]]
    by_chance = np.mean([catalogue.count(g) / len(catalogue) for g in favourite.values()])
    assert in_favourite >= 2.0 * by_chance


def test_windows_of_one_song_differ(tiny_world: Path, truth: dict) -> None:
    """Sections change the arrangement: the two 3-s halves of a clip sound different."""
    assert np.mean([len({s["kind"] for s in row["sections"]}) >= 2 for row in truth["songs"]]) > 0.8
    differences = []
    for row in truth["songs"][:40]:
        with av.open(str(tiny_world / row["file"])) as container:
            stream = container.streams.audio[0]
            mono = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
            frames = [f for frame in container.decode(stream) for f in mono.resample(frame)]
            frames += mono.resample(None)
            audio = np.concatenate([frame.to_ndarray()[0] for frame in frames])
        half = int(3.0 * stream.rate)
        edges = np.geomspace(60.0, 7000.0, 9)
        bands = []
        for window in (audio[:half], audio[half : 2 * half]):
            power = np.abs(np.fft.rfft(window)) ** 2
            freqs = np.fft.rfftfreq(len(window), 1.0 / stream.rate)
            bands.append(
                [
                    10 * np.log10(power[(freqs >= lo) & (freqs < hi)].sum() + 1e-9)
                    for lo, hi in zip(edges[:-1], edges[1:], strict=True)
                ]
            )
        differences.append(np.max(np.abs(np.subtract(*bands))))
    assert np.median(differences) >= 3.0


def test_regenerating_replaces_a_world_but_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "world"
    first = generate_world(out, n_songs=4, n_users=6, clip_seconds=3.0, seed=1, workers=1)
    generate_world(out, n_songs=4, n_users=6, clip_seconds=3.0, seed=2, workers=1)
    assert len(list((out / "audio").iterdir())) == 4
    assert first.n_songs == 4 and first.n_users == 6
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(WorldError, match="notes.txt"):
        generate_world(tmp_path / "elsewhere", n_songs=4, n_users=6, clip_seconds=3.0)


def test_chords_parse_from_roman_numerals() -> None:
    assert parse_chord("bVII7") == (10, (0, 4, 7, 10))
    assert parse_chord("ii7") == (2, (0, 3, 7, 10))
    assert parse_chord("i") == (0, (0, 3, 7))
    assert parse_chord("IVmaj7") == (5, (0, 4, 7, 11))


def test_world_command_prints_a_summary(tmp_path: Path) -> None:
    from cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "world",
            "--out",
            str(tmp_path / "w"),
            "--songs",
            "4",
            "--users",
            "6",
            "--clip-seconds",
            "3",
            "--seed",
            "5",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 songs" in result.output and "6 listeners" in result.output


def test_every_world_instrument_kit_and_drum_has_a_general_midi_sound() -> None:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont_path()))
    assert set(GM_PROGRAMS) == set(INSTRUMENTS)
    for name, programs in GM_PROGRAMS.items():
        for program in programs:
            assert synth.sfpreset_name(sfid, 0, program), (name, program)
    assert set(GM_KITS) == set(KITS)
    for kit, presets in GM_KITS.items():
        for preset in presets:
            assert synth.sfpreset_name(sfid, DRUM_BANK, preset), (kit, preset)
    voices = {voice for levels in PATTERNS.values() for bar in levels for voice in bar}
    assert voices | {"crash"} <= set(GM_DRUM_KEYS)


@pytest.fixture(scope="module")
def one_artist_per_genre():
    """The first artist of each genre in a seeded catalogue, its production and first song."""
    artists, songs = draw_catalogue(np.random.default_rng([11, 1]), 400)
    rng = np.random.default_rng([11, 5])
    productions = [draw_production(rng, artist) for artist in artists]
    first = {}
    for song in songs:
        first.setdefault(song.genre, (artists[song.artist], productions[song.artist], song))
    assert len(first) == len(GENRES)
    return [first[g] for g in sorted(first)]


def test_every_genre_renders_on_sampled_instruments(one_artist_per_genre) -> None:
    for artist, production, song in one_artist_per_genre:
        clip, _ = render_song_soundfont(song, artist, production, 3.0)
        genre = GENRES[song.genre].name
        assert clip.shape == (3 * SAMPLE_RATE, 2) and clip.dtype == np.float32, genre
        assert np.isfinite(clip).all(), genre
        peak = np.max(np.abs(clip))
        assert 10 ** (-4.1 / 20) <= peak <= 10 ** (-1.9 / 20), genre
        assert np.sqrt(np.mean(clip**2)) > 0.02, genre  # music, not near-silence
        synthesized, _ = render_song(song, artist, 3.0)
        assert not np.allclose(clip, synthesized, atol=0.05), genre


def test_a_rendering_does_not_depend_on_what_was_rendered_before(one_artist_per_genre) -> None:
    (artist, production, song), (other_artist, other_production, other) = one_artist_per_genre[:2]
    first, _ = render_song_soundfont(song, artist, production, 3.0)
    render_song_soundfont(other, other_artist, other_production, 3.0)
    again, _ = render_song_soundfont(song, artist, production, 3.0)
    assert first.tobytes() == again.tobytes()


def test_each_artist_keeps_its_own_programs(tiny_world: Path, truth: dict) -> None:
    assert truth["instruments"] == "soundfont"
    programs = [tuple(a["production"]["programs"].values()) for a in truth["artists"]]
    assert len(set(programs)) == len(programs)  # no two artists share all their gear
    kits = {a["production"]["kit"] for a in truth["artists"]}
    assert len(kits) >= 4


def test_the_synthesizer_is_chosen_explicitly_and_changes_only_the_audio(tmp_path: Path) -> None:
    sizes = dict(n_songs=4, n_users=6, clip_seconds=3.0, seed=2, workers=1)
    generate_world(tmp_path / "sf", **sizes)
    generate_world(tmp_path / "synth", instruments="synth", **sizes)
    sampled, synthesized = digests(tmp_path / "sf"), digests(tmp_path / "synth")
    for name in ("listens.tsv", "songs.csv"):
        assert sampled[name] == synthesized[name]
    audio = [name for name in sampled if name.startswith("audio/")]
    assert len(audio) == 4 and all(sampled[name] != synthesized[name] for name in audio)
    truth = json.loads((tmp_path / "synth" / TRUTH_FILE).read_text(encoding="utf-8"))
    assert truth["instruments"] == "synth" and "production" not in truth["artists"][0]
    with pytest.raises(WorldError, match="soundfont, synth"):
        generate_world(tmp_path / "other", instruments="organ", **sizes)


def test_a_missing_soundfont_is_a_clear_error_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app

    monkeypatch.setenv(SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(WorldError, match=SOUNDFONT_PACKAGE):
        generate_world(tmp_path / "w", n_songs=4, n_users=6, clip_seconds=3.0, workers=1)
    assert not (tmp_path / "w").exists()
    args = ["world", "--out", str(tmp_path / "w"), "--songs", "4", "--users", "6"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert SOUNDFONT_PACKAGE in said and "--instruments synth" in said


@pytest.mark.parametrize("package", ["tinysoundfont", "pedalboard"])
@pytest.mark.parametrize("command", ["world", "demo"])
def test_without_the_world_extra_the_commands_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, command: str
) -> None:
    """An install without `.[world]` (the image's): one line naming the extra, no traceback."""
    from cli.main import app

    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    args = {
        "world": ["world", "--out", str(tmp_path / "w"), "--songs", "4", "--users", "6"],
        "demo": ["demo", "--workdir", str(tmp_path), "--songs", "10", "--no-serve"],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and not isinstance(result.exception, ImportError)
    (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert "pip install '.[world]'" in line and package in line, result.output
    assert "Traceback" not in result.output


def test_a_taste_for_production_steers_listens_toward_the_liked_sound() -> None:
    rng = np.random.default_rng(11)
    artists, songs = draw_catalogue(rng, 400)
    sound = production_sound([draw_production(rng, artist) for artist in artists])
    listeners = draw_listeners(rng, 300, artists, len(songs))
    features = SongFeatures.of(songs, sound)
    assert features.sound is not None and features.sound.shape == (400, len(SOUND_AXES))
    taste = draw_sound_taste(rng, 300, len(SOUND_AXES), 1.0)
    likes = dataclasses.replace(listeners, sound=taste)

    def liked_minus_catalogue(chosen: Listeners) -> float:
        users, items, _ = sample_listens(np.random.default_rng(5), chosen, features)
        projection = taste @ features.sound.T  # (users, songs) how much each user likes each sound
        heard = np.bincount(users, weights=projection[users, items]) / np.bincount(users)
        return float(np.mean(heard - projection.mean(axis=1)))

    assert liked_minus_catalogue(listeners) == pytest.approx(0.0, abs=0.15)
    assert liked_minus_catalogue(likes) > 0.5


def test_production_taste_changes_listens_not_audio_and_needs_sampled_instruments(
    tmp_path: Path,
) -> None:
    sizes = dict(n_songs=4, n_users=6, clip_seconds=3.0, seed=2, workers=1)
    generate_world(tmp_path / "plain", **sizes)
    generate_world(tmp_path / "taste", production_taste=1.0, **sizes)
    plain, taste = digests(tmp_path / "plain"), digests(tmp_path / "taste")
    assert {n: d for n, d in plain.items() if n != TRUTH_FILE and n != "listens.tsv"} == {
        n: d for n, d in taste.items() if n != TRUTH_FILE and n != "listens.tsv"
    }
    truth = json.loads((tmp_path / "taste" / TRUTH_FILE).read_text(encoding="utf-8"))
    assert truth["sound_axes"] == list(SOUND_AXES)
    assert all(len(u["production_taste"]) == len(SOUND_AXES) for u in truth["users"])
    plain_truth = json.loads((tmp_path / "plain" / TRUTH_FILE).read_text(encoding="utf-8"))
    assert "production_taste" not in plain_truth["users"][0]
    with pytest.raises(WorldError, match="sampled instruments"):
        generate_world(tmp_path / "synth", instruments="synth", production_taste=1.0, **sizes)
