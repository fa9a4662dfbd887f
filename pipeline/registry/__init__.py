"""The model registry: immutable versions of everything the service serves, and one pointer.

A version is built from a finished run (factorization + `models/cnn` + `report.json`) by
`publish_run` and loaded by the service with `load_version` / `load_current`:

    REG/
      current                 one line, the id of the version the service loads
      versions/<id>/
        encoder/              the CNN checkpoint, copied from RUN/models/cnn/ with its manifest
        index/                `index.CatalogueIndex.save`: the cf space (cosine and inner
                              product) and the content space
        user_factors.npy      (n_users, F) float32, rows follow user_ids.json
        user_ids.json
        song_factors.npy      (n_songs, F) float32: the WMF factors of the songs with listens
        song_ids.json         (rows follow it); the next night's WMF starts from them
        test_song_ids.json    the run's cold test songs: the next night evaluates on the same
        songs.csv             song_id,title,artist of every catalogue song (the dataset's
                              songs.csv), for the catalogue DB
        cold_song_ids.json    catalogue songs without listening data: their cf vector is the
                              content model's prediction, as for a track added by audio
        listens/              the play counts per user the run's listens held (`listens`):
                              played songs left out, users folded in
        report.json           the run's evaluation (the model table of GET /v1/model)
        plots/*.png           the report's figures
        map.npz               each space's 2-D map (`catalogue_map`)
        manifest.json         kind "model-version", sha256 of every file above, parents
                              (the artifacts, and the version it replaced), the dataset
                              fingerprint, `parameters.source` ("dataset" | "database"),
                              `parameters.wmf` (the fold-in rule) and
                              `parameters.listens_through` (the catalogue listen id the
                              listens hold up to)
      activations.jsonl       versions made current by hand (`current`)
      .staging/               versions being written; a crash leaves its debris only here

The cf space places each song at its WMF factors or at the CNN's prediction (see
`placement`); the content space holds the CNN's prediction for every song in the mel cache
whose prediction is usable (finite, not all zeros; the others are named in the manifest's
`left_out`).

One job per module: `layout` (names, version ids, the writers' lock), `read` (the current
version and loading one verified: all the service imports to serve), `publish` (a run -> a
version), `current` (the pointer switch, rollbacks and their log, the versions described),
`listens` (the version's listens per user), `placement` (which songs sit at their WMF
factors in the cf space, which at their audio placement), `catalogue_map` (the 2-D map of
each space, fitted at publish, applied to uploads) and `retention` (pruning, crash debris).
The names below
are re-exported for the callers of the registry as a whole (CLI, nightly run, tests).
"""

from pipeline.registry.current import (
    Activation,
    VersionSummary,
    activate_version,
    describe_versions,
    read_activations,
    set_current,
    withdrawn_versions,
)
from pipeline.registry.layout import (
    CURRENT_FILE,
    STAGING_DIR,
    VERSIONS_DIR,
    RegistryError,
)
from pipeline.registry.publish import (
    WARM_MIN_LISTENERS,
    import_catalogue_songs,
    publish_run,
)
from pipeline.registry.read import (
    LoadedVersion,
    RetrainingBase,
    current_version_id,
    current_version_or_none,
    list_versions,
    load_current,
    load_for_retraining,
    load_version,
)
from pipeline.registry.retention import clean_staging, prune_versions

__all__ = [
    "CURRENT_FILE",
    "Activation",
    "VersionSummary",
    "activate_version",
    "describe_versions",
    "read_activations",
    "withdrawn_versions",
    "STAGING_DIR",
    "VERSIONS_DIR",
    "WARM_MIN_LISTENERS",
    "LoadedVersion",
    "RegistryError",
    "RetrainingBase",
    "clean_staging",
    "current_version_id",
    "current_version_or_none",
    "import_catalogue_songs",
    "list_versions",
    "load_current",
    "load_for_retraining",
    "load_version",
    "prune_versions",
    "publish_run",
    "set_current",
]
