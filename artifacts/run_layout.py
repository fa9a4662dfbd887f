"""The names inside a run folder (`--run RUN`, docs/ARCHITECTURE.md), declared once for
every step that writes or reads them."""

from __future__ import annotations

SPLIT_DIR = "split"  # RUN/split/: the cold split
FACTORIZATION_DIR = "factorization"  # RUN/factorization/: WMF factors and ids
MODELS_DIR = "models"  # RUN/models/<name>/: one folder per content model
CNN_NAME = "cnn"  # the run's served content encoder, whatever its architecture
LINEAR_NAME = "linear"
KMEANS_NAME = "kmeans"
ARTIST_NAME = "artist"
HYBRID_NAME = "hybrid"
# The models' roles; a further encoder's folder is its architecture's name, never one of these.
MODEL_NAMES = (CNN_NAME, LINEAR_NAME, KMEANS_NAME, ARTIST_NAME, HYBRID_NAME)
TEST_FACTORS_FILE = "test_song_factors.npy"  # a model's (n_test_songs, F) predictions
REPORT_FILE = "report.json"  # RUN/report.json: the evaluation (copied into a registry version)
PLOTS_DIR = "plots"  # RUN/plots/*.png: the report's figures (copied into a registry version)

# The nightly run's work folder (`REG/pipeline/` unless another is named): run folders under
# `runs/<run id>/`, each with its summary and log, beside the catalogue snapshot.
WORK_DIR = "pipeline"
RUNS_DIR = "runs"
SUMMARY_FILE = "summary.json"
LOG_FILE = "pipeline.log"
