"""Request and response bodies of the API (pydantic), as the OpenAPI schema shows them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

Space = Literal["cf", "content"]
MAX_K = 500
MAX_PLAY_COUNT = 2**31 - 1
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `audio_too_short`.")
    message: str = Field(description="What went wrong, for a person.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems of a `validation_error`."
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SongHit(BaseModel):
    """A catalogue song in a result list, best first."""

    id: str
    title: str
    artist: str
    score: float = Field(description="Cosine similarity, or the inner product for users.")
    new: bool = Field(description="A cold track: no listening data behind its cf vector.")
    has_audio: bool = Field(description="GET /v1/tracks/{id}/audio can play it.")


class Timings(BaseModel):
    """Milliseconds spent per stage of the request."""

    decode_ms: float
    features_ms: float
    model_ms: float
    search_ms: float
    total_ms: float


class AudioWarning(BaseModel):
    """Something the front end did to the upload to use it."""

    code: Literal["truncated", "peak_normalised"] = Field(
        description="`truncated`: only the start was used; `peak_normalised`: the samples"
        " peaked above full scale and the recording was scaled down to peak at it."
    )
    message: str


class AudioInfo(BaseModel):
    seconds: float = Field(description="Seconds of audio the model heard.")
    truncated: bool = Field(description="The upload was longer; only its start was used.")
    peak_normalised: bool = Field(
        default=False,
        description="The samples peaked above full scale (a float recording) and were scaled"
        " down so that the peak sits at full scale.",
    )
    warnings: list[AudioWarning] = Field(default_factory=list)


Placement = Literal["hybrid", "audio"]
PLACEMENT_DESCRIPTION = (
    "How the recording was placed in the cf space: hybrid (its audio and the artist's"
    " earlier songs, for an artist the model version knows) or audio (the CNN alone)."
)


class MapPoint(BaseModel):
    """A song on the 2-D map of a space (GET /v1/model/map)."""

    id: str
    x: float
    y: float


class MapSong(MapPoint):
    title: str
    artist: str


class UploadOnMap(BaseModel):
    """Where the upload and its neighbours sit on GET /v1/model/map of the space searched:
    their vectors through the version's projection, as the catalogue's songs were."""

    x: float
    y: float
    neighbours: list[MapPoint]


class TagScore(BaseModel):
    """A tag of the model's tag head (MSD_musicnn's 50 Last.fm tags) and its probability."""

    tag: str
    probability: float = Field(ge=0.0, le=1.0)


TAGS_DESCRIPTION = (
    "The recording's most probable tags (top 5, most probable first), when the served model"
    " carries a tag head (musicnn-msd, student); null for a model without one."
)


class SimilarResponse(BaseModel):
    model_version: str
    space: Space
    placement: Placement = Field(description=PLACEMENT_DESCRIPTION)
    similarity: Literal["cosine"] = "cosine"
    k: int
    results: list[SongHit]
    audio: AudioInfo
    timings: Timings
    on_map: UploadOnMap | None = Field(
        default=None, description="null when the model version carries no map of the space."
    )
    tags: list[TagScore] | None = Field(default=None, description=TAGS_DESCRIPTION)


class TrackSimilarResponse(BaseModel):
    model_version: str
    track_id: str
    space: Space
    similarity: Literal["cosine"] = "cosine"
    k: int
    results: list[SongHit]


class Track(BaseModel):
    id: str
    title: str
    artist: str
    origin: Literal["warm", "cold"] = Field(
        description="warm: imported from the dataset; cold: added by audio through the API."
    )
    new: bool = Field(description="No listening data behind its cf vector.")
    has_audio: bool
    added_at: datetime
    spaces: list[Space] = Field(description="Index spaces that hold a vector for it.")
    tags: list[TagScore] | None = Field(
        default=None,
        description=TAGS_DESCRIPTION + " GET /v1/tracks/{id} hears the track's stored audio"
        " (null when it has none).",
    )


class TrackCreated(Track):
    model_version: str = Field(description="The model version that placed it.")
    placement: Placement = Field(description=PLACEMENT_DESCRIPTION)
    cf_vector: list[float] = Field(
        description="Where it sits in the cf space (float32 values, exactly as indexed)."
    )
    content_vector: list[float] = Field(
        description="Where it sits in the content space: the CNN's content embedding of its"
        " audio (float32 values, before the index normalises them)."
    )
    audio: AudioInfo
    timings: Timings


class RecommendationsResponse(BaseModel):
    user_id: str
    model_version: str
    scoring: Literal["inner_product"] = Field(
        default="inner_product",
        description="user factors . song vector in the cf space (the WMF preference score).",
    )
    space: Literal["cf"] = "cf"
    user_vector: Literal["fitted", "folded_in"] = Field(
        description="fitted: the version's WMF factors of the user; folded_in: solved now from"
        " the user's listens (the version's and those posted since) against the version's"
        " song factors, for a listener new since the version or whose listens changed."
    )
    only_new: bool
    include_played: bool = Field(
        description="false (the default): songs the user has played are left out."
    )
    played_songs: int = Field(
        description="Songs the user has played: in the version's listens and posted since."
    )
    k: int
    results: list[SongHit]


def _rfc3339(value: object) -> object:
    """Be as strict as the schema's `date-time`: a number or a bare date is refused, not
    read as a Unix time or a midnight as pydantic's lax mode would."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time string with a time zone")


PlayedAt = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


class ListenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200)
    song_id: str = Field(min_length=1, max_length=200)
    count: int = Field(default=1, ge=1, le=MAX_PLAY_COUNT)
    played_at: PlayedAt | None = Field(
        default=None,
        description="When: an RFC 3339 date-time with a time zone (`2024-05-01T20:15:00Z`);"
        " the time of the request if left out.",
    )


class ListensRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listens: list[ListenIn] = Field(min_length=1)


class ListenResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: Literal["stored", "rejected"]
    error: ErrorDetail | None = None


class ListensResponse(BaseModel):
    """One result per item: stored ones are durable when this answer is sent."""

    stored: int
    rejected: int
    results: list[ListenResult]


class ModelMetrics(BaseModel):
    """mAP@k and AUC, and (reports since they were added) recall@c, precision@c and
    NDCG@c at c = 10, 50, 500, keyed "recall@10" etc.; whatever other metrics the report
    holds pass through as they are."""

    model_config = ConfigDict(extra="allow")

    map: float = Field(description="mAP@k on the cold test songs.")
    auc: float
    architecture: str | None = Field(
        default=None, description="The encoder's architecture, for a model that is an encoder."
    )


class ModelTable(BaseModel):
    """The report's model table over one set of cold test songs."""

    n_users: int
    n_test_songs: int
    models: dict[str, ModelMetrics]
    expected_random: ModelMetrics
    gap_closed: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per model and metric: (model - expected random) / (upper_bound -"
        " expected random).",
    )


class Evaluation(ModelTable):
    k: int
    n_train_songs: int
    kinds: dict[str, ModelTable] = Field(
        default_factory=dict,
        description="The table per kind of test song: `cold_track` (a new song by an artist"
        " with training songs), `cold_artist` (by an artist without).",
    )


class ModelInfo(BaseModel):
    version: str
    created_at: str
    architecture: str = Field(description="The served content encoder's architecture.")
    n_factors: int
    counts: dict[str, int]
    evaluation: Evaluation
    parents: dict[str, str]
    plots: list[str] = Field(
        default_factory=list,
        description="The evaluation's figures, at GET /v1/model/plots/{name}.",
    )


class CatalogueMapResponse(BaseModel):
    """A 2-D map of one space: its L2-normalised vectors on their two principal axes
    (PCA fitted at publish). An upload lands on it through the same projection
    (POST /v1/similar's `on_map`)."""

    model_version: str
    space: Space
    projection: Literal["pca"] = "pca"
    explained_variance: list[float] = Field(
        description="The share of the space's variance each axis holds."
    )
    n_songs: int = Field(description="Songs the space held when the version was published.")
    points: list[MapSong] = Field(
        description="At most `limit` of them, always the same ones for a version: those of"
        " smallest hash of their id (songs deleted since are left out)."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
    songs: dict[Space, int] = Field(description="Vectors per index space.")
    worker: int = Field(
        description="The process id of the worker that answered (`coldstart serve --workers`):"
        " each loads the version and swaps on its own."
    )


class PipelineRun(BaseModel):
    """A retrain: queued, running, or how it ended (`coldstart pipeline`'s outcome)."""

    id: str
    trigger: Literal["cron", "api", "cli"] = Field(
        description="The nightly schedule, the API (POST /v1/admin/retrain, or"
        " /v1/admin/versions/{id}/activate), or the CLI (`coldstart retrain`, `coldstart model"
        " use`)."
    )
    requested_by: str | None = Field(
        description="The key that asked (`key:` + the first 8 hex of its sha256), if any."
    )
    status: Literal["queued", "running", "published", "refused", "failed", "busy", "activated"] = (
        Field(
            description="published: a new version is current; refused: the quality gate kept the"
            " current one; busy: another run held the registry; failed: see `message`;"
            " activated: a version made current by hand (a rollback), `version_id`."
        )
    )
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None = Field(description="The pipeline's exit code (0, 3, 75, 1 or -signal).")
    version_id: str | None = Field(description="The version it published.")
    message: str | None


class PipelineRunDetail(PipelineRun):
    heartbeat_at: datetime | None = Field(
        description="Last sign of life from the scheduler executing it."
    )
    summary: dict[str, Any] | None = Field(
        description="The pipeline's run summary: steps with durations, gate, drift, and"
        " `left_out` (tracks the version goes without, with why)."
    )


class RetrainResponse(BaseModel):
    run: PipelineRun
    already_queued: bool = Field(
        description="A run was already waiting: this request joined it instead of queueing another."
    )


class PipelineRunsResponse(BaseModel):
    runs: list[PipelineRun] = Field(description="Newest first.")


class GateNumbers(BaseModel):
    passed: bool | None
    decided_by: str | None = Field(description="current, floor or chance.")
    candidate: dict[str, dict[str, float]] | None = Field(
        description="Per gated model (cnn, hybrid) what the version scored at its gate."
    )


class ModelVersion(BaseModel):
    """A version in the registry, as `coldstart model list` shows it."""

    id: str
    created_at: str
    current: bool = Field(description="The version REG/current names (the services serve it).")
    withdrawn: bool = Field(
        description="Rolled back from (and not made current again since): the nightly gate's"
        " floor leaves its numbers out."
    )
    source: str | None = Field(description="dataset or database: where its listens came from.")
    replaced: str | None = Field(description="The version it replaced when published.")
    evaluation: dict[str, ModelMetrics] = Field(
        description="Its run's cold-start evaluation of the cnn and hybrid placements."
    )
    gate: GateNumbers | None = Field(
        description="Its nightly quality gate (none: published by hand)."
    )


class ModelVersionsResponse(BaseModel):
    current: str | None
    versions: list[ModelVersion] = Field(description="Newest first.")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        default=None, max_length=500, description="Why, for the run history (e.g. a ticket)."
    )


class ActivateResponse(BaseModel):
    version: str = Field(description="The version now current.")
    previous: str | None = Field(description="The version it replaced.")
    changed: bool = Field(description="false: it was current already; nothing was recorded.")
    serving: str | None = Field(
        description="The version this replica serves after swapping (the others swap at their"
        " next poll); another than `version` if it failed to load here (see the logs)."
    )
    run_id: str | None = Field(description="Its record in the run history (/v1/admin/runs).")
