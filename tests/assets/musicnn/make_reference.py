"""Make msd_musicnn_reference.json with TensorFlow and the musicnn wheel's own code (README.md).

Not part of the project: run once in a throwaway virtualenv holding TensorFlow and librosa,
with the wheel unpacked beside it (never installed):

    python3 -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow-cpu tf-keras librosa
    unzip musicnn-0.1.0-py3-none-any.whl -d /tmp/musicnn-wheel
    TF_USE_LEGACY_KERAS=1 PYTHONPATH=/tmp/musicnn-wheel \
        /tmp/venv-tf/bin/python tests/assets/musicnn/make_reference.py

(TensorFlow 2.16+ answers the wheel's `tf.compat.v1.layers` only with Keras 2: tf-keras and
TF_USE_LEGACY_KERAS=1.)

The graph is the wheel's `models.define_model(x, is_training, "MSD_musicnn", 50)`, restored
from its checkpoint by `tf.compat.v1.train.Saver` as `extractor.extractor` does. Its input is
`extractor.batch_data`'s, with two fixes: the log is taken in float32 (the wheel casts the
mel to float16 first, which overflows to inf under numpy 2), and each patch's own
`penultimate` is kept (`extractor` returns patch 0's for every patch).
"""

from __future__ import annotations

import json
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import librosa
import numpy as np
import tensorflow as tf
from musicnn import configuration, models

tf.compat.v1.disable_eager_execution()

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parent / "audio"
RECORDINGS = ("brahms_hungarian_dance_5.flac", "sugar_plum_fairy.wav")
N_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
DIGITS = "%.9g"


def log_mel_patches(path: Path) -> np.ndarray:
    """`extractor.batch_data` without the float16 cast: (n_patches, 187, 96) float32."""
    audio, sr = librosa.load(path, sr=configuration.SR)
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=sr,
        hop_length=configuration.FFT_HOP,
        n_fft=configuration.FFT_SIZE,
        n_mels=configuration.N_MELS,
        pad_mode="reflect",  # librosa < 0.10's default, which the wheel was made with
    ).T
    log_mel = np.log10(10000 * mel + 1)
    assert log_mel.dtype == np.float32
    starts = range(0, log_mel.shape[0] - N_FRAMES + 1, N_FRAMES)
    return np.stack([log_mel[start : start + N_FRAMES] for start in starts])


def main() -> None:
    x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, configuration.N_MELS])
    is_training = tf.compat.v1.placeholder(tf.bool)
    logits, *_, penultimate = models.define_model(
        x, is_training, "MSD_musicnn", len(configuration.MSD_LABELS)
    )
    probabilities = tf.nn.sigmoid(logits)
    session = tf.compat.v1.Session()
    checkpoint = Path(models.__file__).parent / "MSD_musicnn"
    tf.compat.v1.train.Saver().restore(session, f"{checkpoint}/")
    recordings = {}
    for name in RECORDINGS:
        patches = log_mel_patches(ASSETS / name)
        tags, features = [], []
        for patch in patches:  # one patch a run, as extractor's BATCH_SIZE = 1
            out = session.run([probabilities, penultimate], {x: patch[None], is_training: False})
            tags.append(out[0][0])
            features.append(out[1][0])
        recordings[name] = {
            "patch_mel_means": [float(DIGITS % v) for v in patches.mean(axis=(1, 2))],
            "penultimate": [[float(DIGITS % v) for v in row] for row in features],
            "tag_probabilities": [[float(DIGITS % v) for v in row] for row in tags],
        }
    versions = {
        package: metadata.version(package)
        for package in ("tensorflow-cpu", "tf-keras", "librosa", "numpy", "soundfile", "soxr")
    }
    reference = {
        "made_by": "tests/assets/musicnn/make_reference.py (see README.md)",
        "model": "MSD_musicnn",
        "wheel": "musicnn-0.1.0-py3-none-any.whl",
        "wheel_sha256": "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
        "python": platform.python_version(),
        "versions": versions,
        "patch_frames": N_FRAMES,
        "tag_names": list(configuration.MSD_LABELS),
        "recordings": recordings,
    }
    out = HERE / "msd_musicnn_reference.json"
    text = json.dumps(reference, indent=1)
    # one line a list of numbers or of names: the file stays small and readable
    text = re.sub(  # JSON puts no newline inside a string: only between elements
        r"\[\n\s*([^\[\]{}]*?)\n\s*\]",
        lambda match: "[" + re.sub(r",\n\s*", ", ", match[1]) + "]",
        text,
    )
    out.write_text(text + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
