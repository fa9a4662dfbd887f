"""`coldstart validate`: every kind of problem, at its file and line; the summary; exit codes."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.validate import front_end_refusal
from corpus.dataset import DatasetError, load_dataset
from corpus.validate import KINDS, Problem, ValidationReport, probe_audio, validate_dataset

SONGS_CSV = """song_id,title,artist
S1,Sine A,Test Tones
S2,"Sine B, louder",Test Tones
S3,Sine C,Test Tones
S4,Hungarian Dance No. 5,US Army Strings
S5,Robin call,Nature
"""
LISTENS = [
    ("u1", "S1", 3),
    ("u1", "S2", 1),
    ("u1", "S4", 12),
    ("u2", "S1", 1),
    ("u2", "S3", 2),
    ("u3", "S4", 1),
    ("u3", "S5", 5),
    ("u4", "S2", 1),
]
SINE_SECONDS = 4.0
BRAHMS_SECONDS = 8.081
ROBIN_SECONDS = 2.699


def write_sine(path: Path, seconds: float = SINE_SECONDS, rate: int = 8000) -> None:
    """A mono 16-bit WAV sine wave: a real, tiny recording."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def listens_text(rows: list[tuple[str, str, int]]) -> str:
    return "".join(f"{user}\t{song}\t{count}\n" for user, song, count in rows)


@pytest.fixture
def dataset(tmp_path: Path, audio_assets: Path) -> Path:
    """A good dataset: three sine waves, two real recordings (linked, not copied)."""
    root = tmp_path / "dataset"
    (root / "audio").mkdir(parents=True)
    (root / "songs.csv").write_text(SONGS_CSV)
    (root / "listens.tsv").write_text(listens_text(LISTENS))
    for song_id, rate in (("S1", 8000), ("S2", 16000), ("S3", 22050)):
        write_sine(root / "audio" / f"{song_id}.wav", rate=rate)
    (root / "audio" / "S4.flac").symlink_to(audio_assets / "brahms_hungarian_dance_5.flac")
    (root / "audio" / "S5.ogg").symlink_to(audio_assets / "robin_chirp.ogg")
    return root


def located(report: ValidationReport) -> list[tuple[str, str, int | None]]:
    return [(problem.kind, problem.file, problem.line) for problem in report.problems]


def only_problem(report: ValidationReport) -> Problem:
    assert len(report.problems) == 1, [str(problem) for problem in report.problems]
    return report.problems[0]


def test_a_good_dataset_is_ok_and_summarised(dataset: Path) -> None:
    report = validate_dataset(dataset, workers=2)
    assert report.problems == [] and report.counts == {}
    assert report.ok and report.errors == 0 and report.warnings == 0
    summary = report.summary
    assert (summary.users, summary.songs, summary.listens) == (4, 5, 8)
    assert summary.plays == sum(count for _, _, count in LISTENS)
    assert summary.density == pytest.approx(8 / (4 * 5))
    assert (summary.songs_listened, summary.unknown_songs) == (5, 0)
    assert summary.median_listens_per_user == 2.0
    assert summary.median_listeners_per_song == 2.0
    assert (summary.audio_files, summary.songs_with_audio) == (5, 5)
    expected_seconds = 3 * SINE_SECONDS + BRAHMS_SECONDS + ROBIN_SECONDS
    assert summary.audio_seconds == pytest.approx(expected_seconds, abs=0.05)
    assert summary.shortest_clip_seconds == pytest.approx(ROBIN_SECONDS, abs=0.01)
    assert summary.longest_clip_seconds == pytest.approx(BRAHMS_SECONDS, abs=0.05)


def test_without_audio_the_folder_is_left_alone(dataset: Path) -> None:
    for file in (dataset / "audio").iterdir():
        file.unlink()
    (dataset / "audio").rmdir()
    report = validate_dataset(dataset, check_audio=False)
    assert report.ok and report.problems == []
    assert report.summary.audio_files is None and report.summary.audio_seconds is None


# (line inserted as line 6, kind, message, whether load_dataset refuses it too)
BAD_LISTENS = [
    ("u1\tS1", "listens-fields", "expected user<TAB>song<TAB>count, found 2 field(s)", True),
    ("u5\tS1\t3\textra", "listens-fields", "found 4 field(s): 'u5\\tS1\\t3\\textra'", True),
    ("", "listens-fields", "empty line", True),
    ("\tS1\t1", "listens-id", "empty user id", True),
    ("u5\t\t1", "listens-id", "empty song id", True),
    ("u5\tS1\t", "listens-count", "empty play count", True),
    ("u5\tS1\tabc", "listens-count", "play count 'abc' is not an integer", True),
    ("u5\tS1\t2.5", "listens-count", "play count '2.5' is not an integer", True),
    ("u5\tS1\t0", "listens-count", "play count '0' is below 1", True),
    ("u5\tS1\t-3", "listens-count", "play count '-3' is below 1", True),
    ("u5\tS1\t3000000000", "listens-count", "play count '3000000000' does not fit in int32", True),
    ("u5\tS9\t1", "listens-unknown-song", "song 'S9' is not in songs.csv", True),
    # the loader leaves repeated pairs to validation: finding them costs a sort
    ("u1\tS4\t7", "listens-duplicate", "user 'u1' and song 'S4' already on line 3", False),
]


@pytest.mark.parametrize(
    ("line", "kind", "message", "loader_refuses"), BAD_LISTENS, ids=[c[2] for c in BAD_LISTENS]
)
def test_each_bad_listen_is_reported_at_its_line(
    dataset: Path, line: str, kind: str, message: str, loader_refuses: bool
) -> None:
    rows = listens_text(LISTENS).splitlines()
    rows.insert(5, line)  # below good lines and above more
    (dataset / "listens.tsv").write_text("\n".join(rows) + "\n")
    problem = only_problem(validate_dataset(dataset))
    assert (problem.kind, problem.file, problem.line) == (kind, "listens.tsv", 6)
    assert message in problem.message
    assert problem.severity == "error"
    if loader_refuses:
        with pytest.raises(DatasetError):
            load_dataset(dataset)


@pytest.mark.parametrize("count", ["0x4", " 4", "+4", "4 "])
def test_count_spelling_is_one_rule_for_validate_and_loader(dataset: Path, count: str) -> None:
    """pyarrow's int parser would take ' 4' and '0x4'; the contract says decimal digits, and
    validation and the loader apply that one rule (`corpus.dataset.classify_counts`)."""
    (dataset / "listens.tsv").write_text(listens_text(LISTENS) + f"u5\tS1\t{count}\n")
    report = validate_dataset(dataset)
    assert located(report) == [("listens-count", "listens.tsv", 9)]
    assert f"play count {count!r} is not an integer" in report.problems[0].message
    with pytest.raises(DatasetError, match="is not an integer"):
        load_dataset(dataset)


def test_every_problem_keeps_its_line_among_many(dataset: Path) -> None:
    lines = [
        "u1\tS1\t3",  # 1
        "bad line",  # 2 fields
        "u1\tS2\t0",  # 3 count
        "",  # 4 empty
        "u2\tS1\t1",  # 5
        "u1\tS1\t2",  # 6 duplicate of 1
        "u2\tS7\t1",  # 7 unknown
        "a\tb\tc\td",  # 8 fields
        "u3\tS3\tx",  # 9 count
        "u2\tS1\t4",  # 10 duplicate of 5
    ]
    (dataset / "listens.tsv").write_text("\n".join(lines) + "\n")
    report = validate_dataset(dataset, check_audio=False)
    assert located(report) == [
        ("listens-fields", "listens.tsv", 2),
        ("listens-count", "listens.tsv", 3),
        ("listens-fields", "listens.tsv", 4),
        ("listens-duplicate", "listens.tsv", 6),
        ("listens-unknown-song", "listens.tsv", 7),
        ("listens-fields", "listens.tsv", 8),
        ("listens-count", "listens.tsv", 9),
        ("listens-duplicate", "listens.tsv", 10),
    ]
    assert "already on line 5" in report.problems[-1].message
    assert report.counts["listens-fields"] == 3 and not report.ok


def test_line_numbers_hold_across_a_multi_block_read(dataset: Path) -> None:
    """Big enough for pyarrow's threaded reader, which cannot number bad rows by itself."""
    users = np.repeat(np.arange(60_000), 5)
    songs = np.tile(np.array(["S1", "S2", "S3", "S4", "S5"]), 60_000)
    rows = [f"user{u:06d}\t{s}\t1" for u, s in zip(users, songs, strict=True)]
    rows[123_456] = "user000000\tS1"
    rows[250_000] = "user060000\tS1\tnone"
    (dataset / "listens.tsv").write_text("\n".join(rows) + "\n")
    report = validate_dataset(dataset, check_audio=False)
    assert located(report) == [
        ("listens-fields", "listens.tsv", 123_457),
        ("listens-count", "listens.tsv", 250_001),
    ]
    assert report.summary.listens == 300_000 - 1
    assert report.summary.users == 60_001


def test_counts_every_problem_but_keeps_the_first_few(dataset: Path) -> None:
    rows = listens_text(LISTENS) + "".join(f"u{i}\tS1\t0\n" for i in range(10, 17))
    (dataset / "listens.tsv").write_text(rows)
    report = validate_dataset(dataset, max_per_kind=2)
    assert report.counts == {"listens-count": 7}
    assert [problem.line for problem in report.problems] == [9, 10]
    assert report.omitted() == {"listens-count": 5}
    everything = validate_dataset(dataset, max_per_kind=None)
    assert len(everything.problems) == 7 and everything.omitted() == {}


def test_ids_that_are_not_utf8_or_padded(dataset: Path) -> None:
    raw = listens_text(LISTENS).encode() + b"u\xff\tS1\t1\n"
    (dataset / "listens.tsv").write_bytes(raw)
    problem = only_problem(validate_dataset(dataset))
    assert (problem.kind, problem.line) == ("listens-id", 9)
    assert "not UTF-8" in problem.message

    (dataset / "listens.tsv").write_text(listens_text(LISTENS) + "u5 \tS1\t1\n")
    report = validate_dataset(dataset)
    assert located(report) == [("whitespace", "listens.tsv", 9)]
    assert report.ok  # a warning only


def test_a_header_in_listens_gets_a_hint(dataset: Path) -> None:
    (dataset / "listens.tsv").write_text("user_id\tsong_id\tplay_count\n" + listens_text(LISTENS))
    problems = validate_dataset(dataset).problems
    assert (problems[0].kind, problems[0].line) == ("listens-count", 1)
    assert "no header line" in problems[0].message


@pytest.mark.parametrize(
    ("songs_csv", "expected"),
    [
        (
            SONGS_CSV.replace("song_id,title,artist", "id,title,artist"),
            [("songs-header", 1, "header must be song_id,title,artist, found 'id,title,artist'")],
        ),
        (
            SONGS_CSV + "S6,Only a title\nS7,x,y,z\n",
            [
                ("songs-fields", 7, "found 2 field(s): 'S6,Only a title'"),
                ("songs-fields", 8, "expected song_id,title,artist, found 4 field(s)"),
            ],
        ),
        (
            SONGS_CSV + "S2,Again,Someone\n",
            [("songs-duplicate", 7, "song_id 'S2' already on line 3")],
        ),
        (SONGS_CSV + ",Nameless,Someone\n", [("songs-id", 7, "empty song_id")]),
        (SONGS_CSV + "\n", [("songs-fields", 7, "empty line")]),
        (SONGS_CSV + " S6,Padded,Someone\n", [("whitespace", 7, "surrounding whitespace")]),
    ],
    ids=["header", "fields", "duplicate", "empty-id", "empty-line", "whitespace"],
)
def test_each_songs_problem_is_reported_at_its_line(
    dataset: Path, songs_csv: str, expected: list[tuple[str, int, str]]
) -> None:
    (dataset / "songs.csv").write_text(songs_csv)
    report = validate_dataset(dataset, check_audio=False)
    assert [(p.kind, p.file, p.line) for p in report.problems] == [
        (kind, "songs.csv", line) for kind, line, _ in expected
    ]
    for problem, (_, _, message) in zip(report.problems, expected, strict=True):
        assert message in problem.message
    if report.errors:
        with pytest.raises(DatasetError):
            load_dataset(dataset)


def test_quoted_line_breaks_keep_physical_line_numbers(dataset: Path) -> None:
    songs = SONGS_CSV.replace('"Sine B, louder"', '"Sine B,\nlouder\nstill"') + "S6,No audio,X\n"
    (dataset / "songs.csv").write_text(songs)
    (dataset / "listens.tsv").write_text(listens_text(LISTENS))
    problem = only_problem(validate_dataset(dataset))
    assert (problem.kind, problem.file, problem.line) == ("audio-missing", "songs.csv", 9)
    assert problem.message == "song 'S6' has no audio file"


def test_audio_problems(dataset: Path) -> None:
    audio = dataset / "audio"
    (audio / "S3.wav").unlink()  # S3 has no audio
    write_sine(audio / "S1.flac.wav")  # a song 'S1.flac' that songs.csv lacks
    write_sine(audio / "S2.mp3")  # second file of S2; S2.mp3 sorts first, so it is the one used
    (audio / "S2.mp3").write_bytes(b"ID3 but not an mp3 at all" * 20)
    (audio / "S5.ogg").unlink()
    (audio / "S5.ogg").write_bytes(b"")  # empty: undecodable
    (audio / "notes.txt").write_text("liner notes")
    (audio / "covers").mkdir()
    report = validate_dataset(dataset, workers=2)
    assert located(report) == [
        ("audio-missing", "songs.csv", 4),
        ("audio-unknown-song", "audio/S1.flac.wav", None),
        ("audio-undecodable", "audio/S2.mp3", None),
        ("audio-duplicate", "audio/S2.wav", None),
        ("audio-undecodable", "audio/S5.ogg", None),
        ("audio-ignored", "audio/covers", None),
        ("audio-ignored", "audio/notes.txt", None),
    ]
    messages = {problem.file: problem.message for problem in report.problems}
    assert messages["audio/S2.wav"] == "song 'S2' already has audio/S2.mp3 (the one used)"
    assert messages["audio/S2.mp3"].startswith("cannot be read as audio")
    assert report.errors == 3 and report.warnings == 4  # a song without audio is no error
    assert report.summary.audio_files == 6
    assert report.summary.songs_with_audio == 4  # S1, S2, S4, S5: undecodable still counts
    assert report.summary.audio_seconds == pytest.approx(SINE_SECONDS + BRAHMS_SECONDS, abs=0.05)


def test_warnings_alone_leave_the_dataset_ok(dataset: Path) -> None:
    write_sine(dataset / "audio" / "S99.wav")
    report = validate_dataset(dataset)
    assert located(report) == [("audio-unknown-song", "audio/S99.wav", None)]
    assert report.ok and report.warnings == 1


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("listens.tsv", ("missing", "listens.tsv", "missing")),
        ("songs.csv", ("missing", "songs.csv", "missing")),
        ("audio", ("missing", "audio", "missing")),
    ],
)
def test_missing_parts(dataset: Path, remove: str, expected: tuple[str, str, str]) -> None:
    target = dataset / remove
    if target.is_dir():
        for file in target.iterdir():
            file.unlink()
        target.rmdir()
    else:
        target.unlink()
    report = validate_dataset(dataset)
    kind, file, message = expected
    problem = only_problem(report)
    assert (problem.kind, problem.file, problem.line) == (kind, file, None)
    assert message in problem.message and not report.ok


def test_an_empty_listens_file_and_a_missing_folder(tmp_path: Path, dataset: Path) -> None:
    (dataset / "listens.tsv").write_text("")
    assert located(validate_dataset(dataset)) == [("missing", "listens.tsv", None)]
    report = validate_dataset(tmp_path / "nowhere")
    assert not report.ok and "not a folder" in only_problem(report).message


def test_probe_reads_every_real_recording(audio_assets: Path) -> None:
    recordings = sorted(p for p in audio_assets.iterdir() if p.suffix != ".md")
    assert len(recordings) >= 5
    for path in recordings:
        probe = probe_audio(path)
        assert probe.error is None, path
        assert probe.seconds is not None and 2.0 < probe.seconds <= 8.1, path


def test_probe_names_the_failure(tmp_path: Path) -> None:
    text = tmp_path / "text.ogg"
    text.write_text("not audio\n" * 20)
    probe = probe_audio(text)
    assert probe.seconds is None and probe.error is not None


def test_every_kind_has_a_severity_and_a_description() -> None:
    assert all(severity in ("error", "warning") and text for severity, text in KINDS.values())


def test_cli_exit_codes_and_output(dataset: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["validate", str(dataset), "--workers", "2", "--headers-only"])
    assert good.exit_code == 0, good.output
    assert "users" in good.output and "0 errors, 0 warnings" in good.output

    extra = [("u9", "S1", 0), ("u10", "S1", 0), ("u11", "S1", 0)]
    (dataset / "listens.tsv").write_text(listens_text(LISTENS + extra))
    bad = runner.invoke(app, ["validate", str(dataset), "--no-audio", "--max-per-kind", "1"])
    assert bad.exit_code == 1
    assert "listens.tsv:9: play count '0' is below 1" in bad.output
    assert "listens.tsv:10:" not in bad.output
    assert "... and 2 more play counts" in bad.output
    assert "3 errors" in bad.output


def test_cli_warns_of_clips_featurize_refuses(dataset: Path) -> None:
    """The robin (2.7 s) is shorter than one window; S3 is made digitally silent."""
    with wave.open(str(dataset / "audio" / "S3.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(bytes(2 * 4 * 22050))
    result = CliRunner().invoke(app, ["validate", str(dataset), "--workers", "2"])
    assert result.exit_code == 0, result.output  # warnings: the dataset still loads
    assert "audio/S3.wav: featurize skips it: silent (RMS" in result.output
    assert "audio/S5.ogg: featurize skips it: 2.70 s is shorter than one 3.00 s window" in (
        result.output
    )
    assert "0 errors, 2 warnings" in result.output
    report = validate_dataset(dataset, clip_check=front_end_refusal)
    assert located(report) == [
        ("audio-unusable", "audio/S3.wav", None),
        ("audio-unusable", "audio/S5.ogg", None),
    ]


def test_validate_applies_the_front_ends_rule_on_sample_values(dataset: Path) -> None:
    """NaN or inf samples are errors naming the file; a float export above full scale is a
    warning (the front end peak-normalises it), as featurize and the service treat them."""
    from tests.hostile_audio import hostile_corpus

    corpus = hostile_corpus()
    audio = dataset / "audio"
    for song_id, case in [("S1", "float-wav-nan"), ("S2", "float-wav-plus-6-dbfs")]:
        for old in audio.glob(f"{song_id}.*"):
            old.unlink()
        (audio / f"{song_id}.wav").write_bytes(corpus[case].data)
    report = validate_dataset(dataset, workers=2)
    assert located(report) == [
        ("audio-invalid-samples", "audio/S1.wav", None),
        ("audio-over-full-scale", "audio/S2.wav", None),
    ]
    messages = {problem.file: problem.message for problem in report.problems}
    assert "NaN or infinite" in messages["audio/S1.wav"]
    assert messages["audio/S2.wav"].startswith("peaks at +")
    assert report.errors == 1 and report.warnings == 1
