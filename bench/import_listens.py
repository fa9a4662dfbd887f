"""`coldstart import` of listens into PostgreSQL beside a bare `psql \\copy` of the same file.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.import_listens --rows 1000000 5000000 \\
        --postgres postgresql://postgres@127.0.0.1:5432/test

For each size, a dataset of Taste Profile shape (`bench.load_listens.generate`, kept under
`--data` and reused) is imported, `--repeat` times, the contenders taking turns, each in a
fresh schema of the `--postgres` database (dropped after):

- ours: `coldstart import --dataset D --database URL --no-copy-audio`, the whole command as a
  new user runs it: the interpreter's start, the migrations, the songs, the listens (parsed,
  checked against the songs, COPY), the indexes and keys built, ANALYZE;
- bare: `psql \\copy bare_listens (user_id, track_id, count) FROM 'listens.tsv'` into
  `BARE_TABLE` (the same columns, a default time stamp, an index on the user and one on the
  song, no key: what a new user writes to compare with), printed beside the figures;
- `--baseline DIR`: ours again from another checkout of coldstart (e.g. `git archive` of an
  earlier commit), so that a change is measured before and after in one run;
- `--sqlite`: ours (and the baseline's) into a new SQLite file.

Prints per size the medians, the ratio to the bare copy and the load (`uptime`) before and
after; writes everything to `DATA/import-results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load_listens import generated

REPOSITORY = Path(__file__).resolve().parents[1]
# What a new user compares with: the listens' columns, an index on each id, nothing else.
BARE_TABLE = (
    "CREATE TABLE bare_listens (user_id varchar(200), track_id varchar(200),"
    " count integer, played_at timestamptz DEFAULT now());"
    " CREATE INDEX ON bare_listens (user_id); CREATE INDEX ON bare_listens (track_id)"
)


def bare_copy_sql(listens: Path) -> str:
    """The psql meta-command of the bare copy of `listens` into `BARE_TABLE`."""
    return f"\\copy bare_listens (user_id, track_id, count) FROM '{listens}'"


def psql(url: str, schema: str, sql: str) -> list[str]:
    """psql running `sql` (one -c each `;`-free meta-command or SQL batch) in `schema`."""
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", _in_schema(url, schema), "-c", sql]


def _in_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def _timed(
    command: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        list(command),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def _coldstart_import(tree: Path, dataset: Path, database: str) -> float:
    """`coldstart import` from the checkout `tree`, timed as a whole (run in `tree`: `-c`
    puts the working folder before PYTHONPATH)."""
    command = [sys.executable, "-c", "from cli.main import app; app()", "import"]
    command += ["--dataset", str(dataset), "--database", database, "--no-copy-audio"]
    return _timed(command, {"PYTHONPATH": str(tree)}, cwd=tree)


def _schema(url: str) -> str:
    schema = f"import_bench_{uuid.uuid4().hex[:8]}"
    _timed(psql(url, "public", f'CREATE SCHEMA "{schema}"'))
    return schema


def _drop(url: str, schema: str) -> None:
    _timed(psql(url, "public", f'DROP SCHEMA "{schema}" CASCADE'))


def measure_once(
    dataset: Path, url: str, trees: dict[str, Path], sqlite: bool, scratch: Path
) -> dict[str, float]:
    """One turn of every contender on `dataset`: seconds by name."""
    seconds: dict[str, float] = {}
    for name, tree in trees.items():
        schema = _schema(url)
        try:
            seconds[name] = _coldstart_import(tree, dataset, _in_schema(url, schema))
        finally:
            _drop(url, schema)
    schema = _schema(url)
    try:
        _timed(psql(url, schema, BARE_TABLE))
        seconds["bare"] = _timed(psql(url, schema, bare_copy_sql(dataset / "listens.tsv")))
    finally:
        _drop(url, schema)
    if sqlite:
        for name, tree in trees.items():
            folder = scratch / name
            folder.mkdir()
            try:
                database = f"sqlite:///{folder / 'catalogue.db'}"
                seconds[f"{name} sqlite"] = _coldstart_import(tree, dataset, database)
            finally:
                shutil.rmtree(folder)
    return seconds


def measure_size(rows: int, args: argparse.Namespace, trees: dict[str, Path]) -> dict[str, Any]:
    """`args.repeat` turns at `rows` listens: per contender every time, the median and the
    fastest (the turn that lost least to whatever else the cores ran), each with its ratio
    to the bare copy's."""
    dataset = generated(Path(args.data) / f"listens-{rows}", rows, args.seed)
    load_before = list(os.getloadavg())
    turns = []
    with tempfile.TemporaryDirectory(dir=args.data) as scratch:
        for turn in range(args.repeat):
            turns.append(measure_once(dataset, args.postgres, trees, args.sqlite, Path(scratch)))
            print(f"  {rows:,} listens, turn {turn + 1}: {turns[-1]}", flush=True)
    medians = {name: statistics.median(turn[name] for turn in turns) for name in turns[0]}
    fastest = {name: min(turn[name] for turn in turns) for name in turns[0]}
    return {
        "rows": rows,
        "listens_tsv_mib": round((dataset / "listens.tsv").stat().st_size / 2**20, 1),
        "seconds": [{name: round(s, 2) for name, s in turn.items()} for turn in turns],
        "median_seconds": {name: round(s, 2) for name, s in medians.items()},
        "ratio_to_bare": {
            name: round(s / medians["bare"], 2) for name, s in medians.items() if name != "bare"
        },
        "fastest_seconds": {name: round(s, 2) for name, s in fastest.items()},
        "fastest_ratio_to_bare": {
            name: round(s / fastest["bare"], 2) for name, s in fastest.items() if name != "bare"
        },
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per size and contender, with the bare copy's definition under it."""
    lines = [
        "| listens | contender | median s | / bare | fastest s | / bare | every turn s"
        " | load before, after |",
        "|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for size in results:
        load = f"{size['load_before'][0]:.1f}, {size['load_after'][0]:.1f}"
        for name, seconds in size["median_seconds"].items():
            ratio = size["ratio_to_bare"].get(name)
            fastest_ratio = size["fastest_ratio_to_bare"].get(name)
            turns = ", ".join(f"{turn[name]:.1f}" for turn in size["seconds"])
            lines.append(
                f"| {size['rows']:,} | {name} | {seconds:.1f} |"
                f" {'' if ratio is None else f'{ratio:.2f}x'} |"
                f" {size['fastest_seconds'][name]:.1f} |"
                f" {'' if fastest_ratio is None else f'{fastest_ratio:.2f}x'} | {turns} | {load} |"
            )
    lines += ["", f"bare copy: {BARE_TABLE}; then psql {bare_copy_sql(Path('listens.tsv'))}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="turns per size (medians count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="libpq URL of the database the schemas are made in",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "coldstart-bench",
        help="folder of the generated datasets (kept, reused)",
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of coldstart, imported beside this one"
    )
    parser.add_argument("--sqlite", action="store_true", help="also import into SQLite files")
    args = parser.parse_args(argv)
    args.data = args.data.resolve()  # the imports run in their checkouts
    args.data.mkdir(parents=True, exist_ok=True)
    trees = {"ours": REPOSITORY, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    results = [measure_size(rows, args, trees) for rows in args.rows]
    (args.data / "import-results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
