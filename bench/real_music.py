"""Real-music check: do content models trained on a synthetic world group real recordings?

Builds, at run time, excerpts of the soundtracks of freely licensed Debian game-music
packages (`apt-get download` + `dpkg-deb -x` into an ignored folder, never committed):
each package is one soundtrack, the label. Every excerpt is embedded through the
service's own embedding function (`training.inference.embed_audio`: decode, the
checkpoint's log-mel, the CNN), and each excerpt's 5 nearest other excerpts by cosine,
as the `content` space ranks them, are counted when they come from the same soundtrack
(precision@5; neighbours among the excerpts only, the world's songs have no soundtrack).
Side by side, in one run:

- chance: the expected precision@5 of a random ranking, ((n_soundtrack - 1) / (N - 1));
- log-mel statistics: per-excerpt mean and standard deviation of each log-mel band
  (the front end's 128 bands), standardised over the excerpts, cosine;
- two rows per trained run given (`--run NAME=RUN_FOLDER`), e.g. the models trained on
  the additive-synth and on the SoundFont world: its content embedding (what the service's
  `content` space holds) and its predicted factors (the `content` space of encoders saved
  before the embedding existed, and still the cf placement of a new track);
- a saved model of any kind (`--model NAME=MODEL_FOLDER`, e.g. a run's `models/kmeans` or
  `models/linear`, which have no content embedding): its predicted factors, through
  `training.inference.load_predictor` as `coldstart predict` serves them;
- and a third row per run, the run's untrained twins (`untrained_twins`, TWIN_SEEDS of them, their
  mean and range): the same architecture with seeded random weights, its batch norms'
  statistics and its content projection measured on the run's training songs, nothing
  learned. What a world teaches its model shows only as the trained row's lead over this
  one: random convolutions over normalised log-mels already group recordings by their
  spectral texture, and one twin differs from the next by as much as 0.06.

`--teacher` adds the zero-shot teacher (`musicnn-msd`'s network as trained on the Million
Song Dataset, nothing learned here): its 200 pooled (penultimate) features of each whole
excerpt, the targets a `student` distils (`training.distillation`), and of its middle
patch alone (a tenth of the cost); and, per run, each of them joined to the run's content
embedding as `dieleman-msd` joins them (`joined_spaces`: both unit length, side by side),
the world's ear and the tagger's together.

The packages below are not among the ten kept for an independent check (asc-music,
drascula-music, fretsonfire-songs-*, hyperrogue-music, planetblupi-music-ogg,
pushover-data, singularity-music, warzone2100-music, wesnoth-1.16-music).

    .venv/bin/python -m bench.real_music --run synth=runs/demo-...-synth \\
        --run soundfont=runs/demo-...-soundfont
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import subprocess  # noqa: E402
import wave  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audio.config import FRONT_END  # noqa: E402
from audio.decode import DEFAULT_LIMITS, DecodedAudio, decode_audio  # noqa: E402
from audio.frontend import model_input  # noqa: E402
from audio.mel import LogMel  # noqa: E402
from training.checkpoint import load_encoder  # noqa: E402
from training.content_space import fit_content_space  # noqa: E402
from training.encoders import build_encoder  # noqa: E402
from training.encoders.base import ContentEncoder  # noqa: E402
from training.encoders.dieleman_msd import joined_spaces  # noqa: E402
from training.encoders.student import TEACHER  # noqa: E402
from training.inference import embed_audio, load_predictor  # noqa: E402
from training.run_data import load_run_data  # noqa: E402

# Debian package -> the folder (inside the package) holding its soundtrack: the audio files
# under it with "music" in their path.
PACKAGES: dict[str, str] = {
    "supertuxkart-data": "usr/share/games/supertuxkart/data/music",
    "supertux-data": "usr/share/games/supertux2/music",
    "hedgewars-data": "usr/share/games/hedgewars/Data/Music",
    "widelands-data": "usr/share/games/widelands/data/music",
    "naev-data": "usr/share/naev/dat/snd/music",
    "warmux-data": "usr/share/games/warmux/music",
    "extremetuxracer-data": "usr/share/games/etr/music",
    "xmoto-data": "usr/share/games/xmoto/Textures/Musics",
    "scorched3d-data": "usr/share/games/scorched3d/data/globalmods/none/data/music",
    "openclonk-data": "usr/share/games/openclonk/Music.ocg",
    "megaglest-data": "usr/share/games/megaglest",  # the menu's and each faction's music
}
EXTENSIONS = (".ogg", ".mp3", ".flac", ".opus", ".wav")
TRACKS_PER_PACKAGE = 14
EXCERPT_SECONDS = 30.0
MIN_TRACK_SECONDS = 20.0
K = 5
TWIN_SEEDS = (0, 1, 2)
TEACHER_PATCHES = 1  # the teacher's cheapest hearing: one 3-s patch from the middle


def unpack(package: str, folder: Path) -> Path:
    """The package's files under `folder/package` (downloaded and unpacked once)."""
    target = folder / package
    if not (target / ".unpacked").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", "-qq", package], cwd=folder, check=True)
        deb = next(folder.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        deb.unlink()
        (target / ".unpacked").touch()
    return target


def excerpts(folder: Path) -> list[tuple[str, Path]]:
    """(soundtrack, excerpt file): up to TRACKS_PER_PACKAGE tracks a package, each cut to
    EXCERPT_SECONDS from a third of the way in, written as 22.05 kHz mono WAV once."""
    made = []
    for package, music in PACKAGES.items():
        tracks = sorted(
            p
            for p in (unpack(package, folder) / music).rglob("*")
            if p.suffix in EXTENSIONS and "music" in str(p.relative_to(folder)).lower()
        )
        count = 0
        for track in tracks:
            out = folder / "excerpts" / package / f"{track.stem}.wav"
            if not out.is_file():
                decoded = decode_audio(track)
                if decoded.seconds < MIN_TRACK_SECONDS:
                    continue
                write_excerpt(decoded, out, EXCERPT_SECONDS)
            made.append((package, out))
            count += 1
            if count == TRACKS_PER_PACKAGE:
                break
    return made


def write_excerpt(decoded: DecodedAudio, out: Path, seconds: float, at: float = 1 / 3) -> None:
    """`seconds` of `decoded` from `at` (a share) of the way in, as a 16-bit mono WAV at its
    rate."""
    start = int(decoded.samples.size * at)
    cut = decoded.samples[start : start + int(seconds * decoded.sample_rate)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(decoded.sample_rate)
        handle.writeframes((np.clip(cut, -1, 1) * 32767).astype("<i2").tobytes())


def precision_at_k(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of each row's K nearest other rows (cosine) that share its label."""
    unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1)[:, :K]
    return float(np.mean(labels[nearest] == labels[:, None]))


def log_mel_statistics(paths: list[Path]) -> np.ndarray:
    """(n, 256) per-excerpt mean and std of each log-mel band, standardised over excerpts."""
    front_end = LogMel(FRONT_END)
    rows = []
    with torch.inference_mode():
        for path in paths:
            mel = front_end(torch.from_numpy(decode_audio(path).samples))[0].numpy()
            rows.append(np.concatenate([mel.mean(axis=-1), mel.std(axis=-1)]))
    features = np.array(rows)
    return (features - features.mean(0)) / (features.std(0) + 1e-9)


def untrained_twins(run: Path, seeds: Sequence[int], songs: int = 500) -> list[ContentEncoder]:
    """One encoder per seed of `seeds`, of `run`'s trained CNN's architecture and sizes,
    with torch's default initialisation (seeded) and nothing learned: its batch norms'
    running statistics are measured over the whole clips of up to `songs` of the run's
    training songs, one clip a batch (no padding enters them), and its content projection is
    fitted on them as `coldstart train` fits a trained one's (`fit_content_space`). Eval
    mode. The run's data is read once for all the seeds."""
    trained = load_encoder(run / "models" / "cnn")
    data = load_run_data(run, config=trained.config)
    song_ids = data.cached(data.factorization.song_ids)[0][:songs]
    twins = []
    for seed in seeds:
        torch.manual_seed(seed)
        twin = type(trained)(trained.dims, trained.config)
        for norm in twin.modules():
            if isinstance(norm, torch.nn.BatchNorm1d):
                norm.momentum = None  # a cumulative average over every clip
        twin.train()
        with torch.no_grad():
            for song_id in song_ids:
                mel = np.array(data.cache.load(song_id), np.float32)
                twin.pooled_mel(torch.from_numpy(mel)[None])
        twin.eval()
        fit_content_space(twin, data.cache, song_ids, seed=seed)
        twins.append(twin)
    return twins


def embed_all(encoder: ContentEncoder, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(content (n, embedding_dims), factors (n, n_factors)) of each file, as served."""
    embeddings = [embed_audio(encoder, path, DEFAULT_LIMITS, path.name) for path in paths]
    return (
        np.array([embedding.content for embedding in embeddings]),
        np.array([embedding.factors for embedding in embeddings]),
    )


def teacher_features(paths: list[Path], patches: int | None = None) -> np.ndarray:
    """(n, 200) the zero-shot teacher's pooled features of each whole excerpt, or of its
    middle `patches` patches (what a cheaper served ear would hear)."""
    teacher = build_encoder(TEACHER).eval()
    rows = []
    with torch.inference_mode():
        for path in paths:
            mel = model_input(path, teacher.config)
            if patches is not None:
                frames = patches * teacher.config.window_frames
                start = max(0, (mel.shape[1] - frames) // 2)
                mel = mel[:, start : start + frames]
            rows.append(teacher.pooled_mel(torch.from_numpy(mel)[None])[0].numpy())
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("data/real_music"))
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_FOLDER")
    parser.add_argument("--teacher", action="store_true", help=f"add {TEACHER}, zero-shot")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=MODEL_FOLDER",
        help="a saved model of any kind (e.g. RUN/models/kmeans): its predicted factors",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    clips = excerpts(args.folder)
    labels = np.array([package for package, _ in clips])
    paths = [path for _, path in clips]
    names, counts = np.unique(labels, return_counts=True)
    chance = float(np.mean([(counts[names == x][0] - 1) / (len(labels) - 1) for x in labels]))
    rows: dict[str, float | str] = {
        "chance": chance,
        "log-mel mean/std": precision_at_k(log_mel_statistics(paths), labels),
    }
    teachers = {}
    if args.teacher:
        teachers = {
            "whole": teacher_features(paths),
            f"middle {TEACHER_PATCHES} patch": teacher_features(paths, TEACHER_PATCHES),
        }
        for part, features in teachers.items():
            rows[f"{TEACHER} zero-shot, {part}: pooled (200)"] = precision_at_k(features, labels)
    for spec in args.run:
        name, run = spec.split("=", 1)
        content, factors = embed_all(load_encoder(Path(run) / "models" / "cnn"), paths)
        rows[f"{name}: content embedding ({content.shape[1]})"] = precision_at_k(content, labels)
        rows[f"{name}: predicted factors ({factors.shape[1]})"] = precision_at_k(factors, labels)
        for part, features in teachers.items():
            both = joined_spaces(torch.from_numpy(content), torch.from_numpy(features))
            rows[f"{name} + {TEACHER}, {part}: joined"] = precision_at_k(both.numpy(), labels)
        twins = [
            precision_at_k(embed_all(twin, paths)[0], labels)
            for twin in untrained_twins(Path(run), TWIN_SEEDS)
        ]
        rows[f"{name}, untrained twins: content, mean"] = float(np.mean(twins))
        rows[f"{name}, untrained twins: content, range"] = f"{min(twins):.3f}-{max(twins):.3f}"
    for spec in args.model:
        name, folder = spec.split("=", 1)
        predict = load_predictor(Path(folder))
        factors = np.array([predict(path) for path in paths])
        rows[f"{name}: predicted factors ({factors.shape[1]})"] = precision_at_k(factors, labels)
    print(f"{len(paths)} excerpts of {EXCERPT_SECONDS:g} s from {len(names)} soundtracks:")
    print("  " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))
    width = max(len(name) for name in rows)
    print(f"{'content space':{width}} precision@{K}")
    for name, value in rows.items():
        print(f"{name:{width}} {value if isinstance(value, str) else f'{value:.3f}'}")


if __name__ == "__main__":
    main()
