"""Loading benchmark at Taste Profile scale: `read_listens` beside plain `pandas.read_csv`.

Generates 48,373,586 listens of Taste Profile shape (1,019,318 users with 40-hex ids,
384,546 songs with MSD-style 'SO' + 16-character ids, power-law song popularity, at least
ten distinct songs per user, Zipf play counts, rows grouped by user) into a folder outside
the repository, then measures each loader in a fresh subprocess (peak RSS through
`resource.getrusage`, so that one measurement's heap does not leak into the next):

    .venv/bin/python bench/load_listens.py                 # full scale, a few minutes
    .venv/bin/python bench/load_listens.py --rows 1000000  # a quick run

The generated folder is kept (and reused when its parameters match) under `--data`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

TASTE_PROFILE_LISTENS = 48_373_586
TASTE_PROFILE_USERS = 1_019_318
TASTE_PROFILE_SONGS = 384_546
MIN_SONGS_PER_USER = 10
MAX_PLAY_COUNT = 9_667  # the largest count in the Taste Profile
WRITE_CHUNK_ROWS = 2_000_000

MEASUREMENTS = {
    "imports": "python + numpy/pandas/pyarrow imported (the floor of every row)",
    "ours": "corpus.dataset.read_listens (categorical ids, int32 counts)",
    "pandas": "pandas.read_csv(sep='\\t', names=...) with default dtypes",
    "pandas-object": "pandas.read_csv(..., dtype={ids: object}): the pandas 2 default",
    "pandas-categorical": "pandas.read_csv defaults, then pd.Categorical ids: the frame ours gives",
    "validate": "corpus.validate.validate_dataset(check_audio=False): the full listens pass",
}


def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct 40-hex-digit ids (like the Taste Profile's user ids), as `S40` bytes."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    ids = digits[rng.integers(0, 16, size=(n, 40), dtype=np.uint8)]
    return np.unique(ids.view("S40").ravel())[:n]


def _song_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct MSD-style song ids ('SO' + 16 upper-case letters and digits), as `S18`."""
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    ids = np.empty((n, 18), dtype=np.uint8)
    ids[:, :2] = np.frombuffer(b"SO", dtype=np.uint8)
    ids[:, 2:] = alphabet[rng.integers(0, alphabet.size, size=(n, 16), dtype=np.uint8)]
    return np.unique(ids.view("S18").ravel())[:n]


def _songs_per_user(
    rng: np.random.Generator, n_users: int, n_rows: int, n_songs: int
) -> np.ndarray:
    """Listens per user: at least ten, a log-normal tail, summing to exactly `n_rows`."""
    ceiling = max(MIN_SONGS_PER_USER, n_songs // 4)
    tail = rng.lognormal(mean=0.0, sigma=1.2, size=n_users)
    tail *= (n_rows - MIN_SONGS_PER_USER * n_users) / tail.sum()
    counts = np.minimum(MIN_SONGS_PER_USER + tail.astype(np.int64), ceiling)
    while (short := n_rows - int(counts.sum())) > 0:
        room = np.flatnonzero(counts < ceiling)
        counts[rng.choice(room, size=min(short, room.size), replace=False)] += 1
    return counts


def _holds(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of `values` are in the sorted array `sorted_keys`: a boolean mask like `values`."""
    if sorted_keys.size == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[at] == values


def generate(folder: Path, n_rows: int, seed: int = 0) -> None:
    """Write `listens.tsv` and `songs.csv` of Taste Profile shape, scaled to `n_rows` listens.

    Pairs are drawn with replacement from the power-law popularity, de-duplicated, and the
    users left short draw again, so every (user, song) pair is distinct as in the real file.
    """
    rng = np.random.default_rng(seed)
    scale = n_rows / TASTE_PROFILE_LISTENS
    n_users = max(1, round(TASTE_PROFILE_USERS * scale))
    n_songs = max(4 * MIN_SONGS_PER_USER, round(TASTE_PROFILE_SONGS * scale))
    wanted = _songs_per_user(rng, n_users, n_rows, n_songs)
    popularity = 1.0 / (np.arange(n_songs) + 20.0) ** 0.9
    cumulative = np.cumsum(popularity / popularity.sum())

    # user * n_songs + song, sorted and distinct; the pairs of later rounds (few: only the
    # users left short draw again) collect in `recent` and join `keys` when it has grown,
    # so that a round costs its own draws, not a re-sort of every pair drawn so far
    keys = recent = np.empty(0, dtype=np.int64)
    counts = np.zeros(n_users, dtype=np.int64)
    while (deficit := wanted - counts).any():
        users = np.repeat(np.arange(n_users, dtype=np.int64), deficit)
        songs = np.searchsorted(cumulative, rng.random(users.size), side="right")
        drawn = np.unique(users * n_songs + np.minimum(songs, n_songs - 1))
        drawn = drawn[~(_holds(keys, drawn) | _holds(recent, drawn))]
        counts += np.bincount(drawn // n_songs, minlength=n_users)
        recent = np.union1d(recent, drawn)
        if recent.size > keys.size // 8:
            keys, recent = np.union1d(keys, recent), recent[:0]
    keys = np.union1d(keys, recent)
    keys = keys[np.argsort(keys // n_songs + rng.random(keys.size))]  # songs shuffled per user
    user_index, song_index = np.divmod(keys, n_songs)
    del keys
    play_counts = np.minimum(rng.zipf(2.0, size=n_rows), MAX_PLAY_COUNT).astype(np.int32)

    user_ids = pa.array(_hex_ids(rng, n_users)).cast(pa.string())
    song_ids = pa.array(_song_ids(rng, n_songs)).cast(pa.string())
    folder.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    schema = pa.schema(
        [
            ("user_id", pa.dictionary(pa.int32(), pa.string())),
            ("song_id", pa.dictionary(pa.int32(), pa.string())),
            ("play_count", pa.int32()),
        ]
    )
    with pacsv.CSVWriter(folder / "listens.tsv", schema, write_options=options) as writer:
        for start in range(0, n_rows, WRITE_CHUNK_ROWS):
            rows = slice(start, start + WRITE_CHUNK_ROWS)
            writer.write_table(
                pa.table(
                    [
                        pa.DictionaryArray.from_arrays(user_index[rows].astype(np.int32), user_ids),
                        pa.DictionaryArray.from_arrays(song_index[rows].astype(np.int32), song_ids),
                        pa.array(play_counts[rows]),
                    ],
                    schema=schema,
                )
            )
    songs = pa.table(
        {
            "song_id": song_ids,
            "title": np.char.add("Title ", np.arange(n_songs).astype(str)),
            "artist": np.char.add("Artist ", (np.arange(n_songs) // 9).astype(str)),
        }
    )
    with open(folder / "songs.csv", "wb") as handle:
        handle.write(b"song_id,title,artist\n")  # pyarrow would quote the header's names
        pacsv.write_csv(songs, handle, pacsv.WriteOptions(include_header=False))


def generated(folder: Path, n_rows: int, seed: int = 0) -> Path:
    """`folder` holding `generate(folder, n_rows, seed)`: reused when made before with these
    parameters (its `parameters.json`, written last, marks a whole folder)."""
    parameters = {"rows": n_rows, "seed": seed}
    stamp = folder / "parameters.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != parameters:
        print(f"generating {n_rows:,} listens into {folder} ...", flush=True)
        start = time.perf_counter()
        generate(folder, n_rows, seed)
        stamp.write_text(json.dumps(parameters))
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def measure(kind: str, folder: Path) -> dict[str, float]:
    """Run one loader on `folder` in this process; wall and CPU seconds, peak RSS, frame size.

    The libraries are imported before the clock starts, so the figures are the load alone.
    """
    import pandas as pd

    from corpus.dataset import LISTEN_COLUMNS, read_listens
    from corpus.validate import validate_dataset

    path = folder / "listens.tsv"
    wall, cpu = time.perf_counter(), time.process_time()
    frame = None
    if kind == "ours":
        frame = read_listens(path)
    elif kind == "pandas":
        frame = pd.read_csv(path, sep="\t", names=list(LISTEN_COLUMNS))
    elif kind == "pandas-object":
        ids = {"user_id": object, "song_id": object}
        frame = pd.read_csv(path, sep="\t", names=list(LISTEN_COLUMNS), dtype=ids)
    elif kind == "pandas-categorical":
        frame = pd.read_csv(
            path, sep="\t", names=list(LISTEN_COLUMNS), dtype={"play_count": "int32"}
        )
        for column in ("user_id", "song_id"):
            frame[column] = pd.Categorical(frame[column])
    elif kind == "validate":
        report = validate_dataset(folder, check_audio=False)
        if not report.ok:
            raise SystemExit(f"the generated dataset does not validate: {report.problems[:3]}")
    elif kind != "imports":
        raise SystemExit(f"unknown measurement {kind!r}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    frame_bytes = 0 if frame is None else int(frame.memory_usage(deep=True).sum())
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak_kib / 1024,
        "frame_mib": frame_bytes / 2**20,
    }


def _measure_in_subprocess(kind: str, folder: Path, repeat: int) -> dict[str, float]:
    """A fresh interpreter per measurement (ru_maxrss is a high-water mark that never falls);
    of `repeat` runs, the fastest, as the others lost time to whatever else the cores ran."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, __file__, "--measure", kind, "--data", str(folder)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda figures: figures["seconds"])


def _print_table(results: dict[str, dict[str, float]], folder: Path, n_rows: int) -> None:
    """Side by side, with ratios to ours; memory net of the interpreter and its imports."""
    from rich.console import Console
    from rich.table import Table

    size = (folder / "listens.tsv").stat().st_size
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    table = Table(
        title=f"{n_rows:,} listens, listens.tsv {size / 2**30:.2f} GiB "
        f"({os.cpu_count()} cores, {memory:.0f} GiB, {time.strftime('%Y-%m-%d')})"
    )
    columns = ("loader", "wall s", "CPU s", "peak RSS MiB", "net MiB", "frame MiB")
    for column in (*columns, "wall / ours", "CPU / ours", "net MiB / ours"):
        table.add_column(column, justify="left" if column == "loader" else "right", no_wrap=True)
    floor = results["imports"]["peak_rss_mib"] if "imports" in results else 0.0
    ours = results.get("ours")
    for kind, figures in results.items():
        net = figures["peak_rss_mib"] - floor
        ratios = ["", "", ""]
        if ours and kind not in ("imports", "ours"):
            ratios = [
                f"{figures['seconds'] / ours['seconds']:.2f}x",
                f"{figures['cpu_seconds'] / ours['cpu_seconds']:.2f}x",
                f"{net / (ours['peak_rss_mib'] - floor):.2f}x",
            ]
        table.add_row(
            kind,
            f"{figures['seconds']:.2f}",
            f"{figures['cpu_seconds']:.2f}",
            f"{figures['peak_rss_mib']:,.0f}",
            f"{net:,.0f}" if kind != "imports" else "",
            f"{figures['frame_mib']:,.0f}" if figures["frame_mib"] else "",
            *ratios,
        )
    console = Console(width=140)
    console.print(table)
    for kind in results:
        console.print(f"  {kind}: {MEASUREMENTS[kind]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=TASTE_PROFILE_LISTENS, help="listens to generate"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="folder of the generated dataset (kept, reused)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(MEASUREMENTS),
        default=list(MEASUREMENTS),
        help="measure these loaders only",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per loader; the fastest counts")
    parser.add_argument("--measure", choices=list(MEASUREMENTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.data or Path(tempfile.gettempdir()) / "coldstart-bench" / f"listens-{args.rows}"
    if args.measure:
        print(json.dumps(measure(args.measure, folder)))
        return

    generated(folder, args.rows, args.seed)
    results = {}
    for kind in args.only:
        print(f"measuring {kind} ...", flush=True)
        results[kind] = _measure_in_subprocess(kind, folder, args.repeat)
    _print_table(results, folder, args.rows)


if __name__ == "__main__":
    main()
