"""The nightly run: `coldstart pipeline --registry REG (--dataset DIR | --database URL)`.

    lock -> snapshot -> featurize -> factorize (warm-started) -> train (fine-tuned)
         -> evaluate -> quality gate -> publish -> retention

The encoder keeps the current version's architecture (`PipelineSettings.encoder` None) and
is fine-tuned from it; told another architecture, the run trains that one from scratch
(the train step's `architecture` and `from_scratch` in the summary say so). Featurize
caches the mels of every front end the run reads: the trained encoder's, and the current
encoder's, which the quality gate scores the current version through.

Each step is the same function the single commands call (with `engine="spark"` the
featurization, the factorization and the embedding run as Spark jobs), on a run folder of its own
(`WORK/runs/<run id>/`, WORK = `REG/pipeline/`). Nothing touches the registry before the
publish step, which writes a complete version aside and switches `REG/current` with one
rename (`pipeline.registry.publish_run`), so a run that dies at any instant leaves the
current version serving and no version a loader accepts; what it leaves (a run folder,
staging debris) is cleared by the next run.

Stability across nights. WMF starts from the current version's factors with the current
factor count, and the CNN is fine-tuned from the current encoder, so the space the
service's vectors live in moves little (the factorization manifest reports how far).
WMF also keeps the current version's regularization (its manifest's `factorization`
records the lambda and the confidences it was chosen for): the search fits WMF four times
over every listen, most of a night's factorize at Taste Profile scale, so it runs on a
first night, with `regularization="auto"`, or when the current version records no lambda
for this night's confidences; the summary's factorize step says which (`regularization_from`).
The test songs stay those of the current version, so that the quality gate compares the
candidate with the current version on the same songs, and metrics stay comparable from
night to night.

One bad song never fails a run: a track whose stored audio is gone, whose recording does
not featurize (undecodable, NaN samples, too short, silent) or whose predicted vector is
unusable is left out of the content space of that version (a warm one keeps its WMF
factors), and the run publishes the rest. Each is named with its reason in the summary's
`left_out`, in `RUN/pipeline.log` and so in the run's record (`/v1/admin/runs/{id}`).

The quality gate compares the candidate's CNN and hybrid with the current version's (the
one an operator rolled back to, after a rollback) and with the floor: the best numbers a
kept version recorded when it passed its own gate on the same test songs
(`recorded_scores`; a version rolled back from is left out), so that small losses night
after night cannot add up; the summary's `gate.decided_by` says which comparison decided.

The run ends with an `Outcome` (exit code, see `pipeline.outcome`) and a `RunSummary`,
written to `RUN/summary.json` (and `--summary FILE`): per step its status, seconds and
what it found, the gate's decision with both versions' numbers, the factors' drift, and
the tracks left out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from artifacts.files import write_json_atomic
from artifacts.run_layout import CNN_NAME, LOG_FILE, RUNS_DIR, SUMMARY_FILE, WORK_DIR
from evaluation.gate import GateSettings, RecordedScore
from index.settings import IndexSettings
from pipeline.lock import PipelineBusy, pipeline_lock
from pipeline.outcome import EXIT_CODES, Outcome
from pipeline.registry import WARM_MIN_LISTENERS, RetrainingBase, current_version_or_none
from pipeline.snapshot import Snapshot
from training.encoder_fit import CNN_DEFAULTS, CNNSettings
from training.encoders import check_encoder_name, default_front_end

if TYPE_CHECKING:
    from factorization.wmf import WMFParams

log = logging.getLogger("coldstart.pipeline")

TEST_SONGS_FILE = "test_songs.txt"
# When fewer than this share of the current test songs is left, a new split is drawn.
MIN_KEPT_TEST_SHARE = 0.5
# Tracks named in `RunSummary.left_out` (all are counted in `left_out_count`) and in the log.
MAX_LEFT_OUT_NAMED = 1000
MAX_LEFT_OUT_LOGGED = 20
ENGINES = ("local", "spark")


@dataclass(frozen=True)
class PipelineSettings:
    """What one nightly run does. Exactly one of `dataset` and `database_url` is given.

    `factors` applies to the first version only: later runs keep the current version's
    factor count, so the warm start and the fine-tuning apply. `encoder` names the
    architecture to train (None: the current version's, or `cnn.encoder` for a first
    version); one other than the current's trains from scratch. `regularization` is WMF's
    lambda: None for the current version's (searched when there is none, or with
    `from_scratch`), `"auto"` searched every night, or a number. `cnn` trains from scratch
    (its sizes apply to its own architecture, another takes its defaults); fine-tuning runs
    `fine_tune_epochs` of the same settings from the current encoder. `classical_models`
    also fits the `linear` and `kmeans` baselines (seconds beside the encoder), rows of the
    night's report that show how far the encoder stands above them; the gate and the
    published version take only the encoder and the hybrid.
    """

    registry: Path
    dataset: Path | None = None
    database_url: str | None = None
    audio_store: Path | None = None
    work_dir: Path | None = None
    run_id: str | None = None
    encoder: str | None = None
    factors: int = 50
    wmf_iterations: int = 15
    regularization: float | Literal["auto"] | None = None
    cnn: CNNSettings = CNN_DEFAULTS
    fine_tune_epochs: int = 4
    classical_models: bool = True
    from_scratch: bool = False
    gate: GateSettings = field(default_factory=GateSettings)
    keep_versions: int = 5
    keep_runs: int = 5
    warm_min_listeners: int = WARM_MIN_LISTENERS
    seed: int = 0
    workers: int | None = None
    engine: str = "local"  # "spark": featurize, factorize and embed as Spark jobs
    spark_master: str | None = None
    index: IndexSettings = field(default_factory=IndexSettings)

    def __post_init__(self) -> None:
        if self.encoder is not None:
            check_encoder_name(self.encoder)  # UnknownEncoderError names the others
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if (self.dataset is None) == (self.database_url is None):
            raise ValueError("give exactly one source: a dataset folder or a database URL")
        if self.keep_versions < 1 or self.keep_runs < 1:
            raise ValueError("keep_versions and keep_runs must be at least 1")
        if self.fine_tune_epochs < 1:
            raise ValueError("fine_tune_epochs must be at least 1")
        if self.regularization not in (None, "auto") and not float(self.regularization) > 0:
            raise ValueError(f"regularization must be > 0 or 'auto', got {self.regularization!r}")

    @property
    def work(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(self.registry) / WORK_DIR


@dataclass
class StepRecord:
    name: str
    status: str  # "ok" | "failed"
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    """How a run went, for the scheduler (JSON) and a person (`render`)."""

    run_id: str
    run_dir: str
    started_at: str
    outcome: Outcome = Outcome.FAILED
    message: str = ""
    version_id: str | None = None
    previous_version: str | None = None
    current_version: str | None = None
    finished_at: str | None = None
    seconds: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    # Track id -> why it has no content vector in this run's version (first ones named).
    left_out: dict[str, str] = field(default_factory=dict)
    left_out_count: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def leave_out(self, reasons: dict[str, str], step: str) -> None:
        """Record tracks the version goes without (`reasons`: id -> why), and log them."""
        fresh = {song_id: why for song_id, why in reasons.items() if song_id not in self.left_out}
        if not fresh:
            return
        self.left_out_count += len(fresh)
        room = max(0, MAX_LEFT_OUT_NAMED - len(self.left_out))
        self.left_out.update(dict(list(fresh.items())[:room]))
        shown = list(fresh.items())[:MAX_LEFT_OUT_LOGGED]
        named = "; ".join(f"{song_id}: {why}" for song_id, why in shown)
        more = len(fresh) - MAX_LEFT_OUT_LOGGED
        log.warning(
            "step %s: %d tracks left out of this version: %s%s",
            step,
            len(fresh),
            named,
            f" (and {more} more)" if more > 0 else "",
        )

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["outcome"] = str(self.outcome)
        values["exit_code"] = self.exit_code
        return values


@dataclass(frozen=True)
class EncoderPlan:
    """Which encoder a run trains: `architecture`, fine-tuned from the current version's
    encoder (`fine_tune`) or from scratch, and why from scratch (`from_scratch`, None when
    it fine-tunes)."""

    architecture: str
    fine_tune: bool
    from_scratch: str | None

    @classmethod
    def of(cls, settings: PipelineSettings, base: RetrainingBase | None) -> EncoderPlan:
        current = base.encoder.name if base is not None else None
        architecture = settings.encoder or current or settings.cnn.encoder
        if base is None:
            return cls(architecture, False, "no current version")
        if settings.from_scratch:
            return cls(architecture, False, "asked for: --from-scratch")
        if architecture != current:
            return cls(architecture, False, f"asked for {architecture}; the current is {current}")
        return cls(architecture, True, None)


def new_run_id() -> str:
    """`<UTC time>-<6 hex>`: sorts by start time, unique across hosts sharing a registry."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_pipeline(
    settings: PipelineSettings, on_step: Callable[[StepRecord], None] | None = None
) -> RunSummary:
    """Run every step once; never raises for a failed run (see `RunSummary.outcome`).
    `on_step(record)` is called as each step starts (status "running") and ends (a
    progress display)."""
    run_id = settings.run_id or new_run_id()
    run_dir = settings.work / RUNS_DIR / run_id
    started = time.perf_counter()
    summary = RunSummary(run_id, str(run_dir), datetime.now(UTC).isoformat())
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to(run_dir / LOG_FILE)
    try:
        with pipeline_lock(settings.registry, run_id):
            _Run(settings, run_dir, summary, on_step).execute()
    except PipelineBusy as error:
        summary.outcome, summary.message = Outcome.BUSY, str(error)
    except Exception as error:  # a failed run is reported, never raised: current stays
        summary.outcome = Outcome.FAILED
        step = summary.steps[-1].name if summary.steps else "start"
        summary.message = f"{step}: {type(error).__name__}: {error}"
        log.error("run %s failed in %s\n%s", run_id, step, traceback.format_exc())
    finally:
        summary.seconds = round(time.perf_counter() - started, 1)
        summary.finished_at = datetime.now(UTC).isoformat()
        summary.current_version = current_version_or_none(settings.registry)
        write_json_atomic(run_dir / SUMMARY_FILE, summary.to_json())
        log.info(
            "run %s: %s in %.1f s: %s", run_id, summary.outcome, summary.seconds, summary.message
        )
        logging.getLogger("coldstart").removeHandler(handler)
        handler.close()
    return summary


class _Run:
    """One run's steps; each records its seconds and findings in the summary."""

    def __init__(
        self,
        settings: PipelineSettings,
        run_dir: Path,
        summary: RunSummary,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = Path(settings.registry)
        self.run_dir = run_dir
        self.summary = summary
        self.on_step = on_step or (lambda _record: None)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        detail: dict[str, Any] = {}
        record = StepRecord(name, "running", 0.0, detail)
        self.summary.steps.append(record)
        log.info("step %s: started", name)
        self.on_step(record)
        started = time.perf_counter()
        try:
            yield detail
        except BaseException:
            record.status = "failed"
            raise
        finally:
            record.seconds = round(time.perf_counter() - started, 2)
            if record.status == "failed":
                self.on_step(record)
        record.status = "ok"
        self.on_step(record)
        log.info(
            "step %s: done in %.1f s %s", name, record.seconds, json.dumps(detail, default=str)
        )

    def execute(self) -> None:
        settings = self.settings
        from pipeline.registry import clean_staging, load_for_retraining

        with self.step("prepare") as detail:
            detail["staging_entries_removed"] = clean_staging(self.registry)
            current = current_version_or_none(self.registry)
            self.summary.previous_version = current
            detail["current_version"] = current
            # Verified once here; factorize, train and the gate all start from it.
            base = load_for_retraining(self.registry, current) if current else None
        snapshot = self._snapshot(base)
        gone = "missing_audio: its stored file is gone"
        self.summary.leave_out(dict.fromkeys(snapshot.missing_audio, gone), "snapshot")
        plan = EncoderPlan.of(settings, base)
        self._featurize(snapshot.root, plan, base)
        self._factorize(snapshot.root, base)
        self._train(snapshot.root, base, plan)
        with self.step("evaluate") as detail:
            from evaluation.report import evaluate_run

            report = evaluate_run(
                self.run_dir,
                seed=settings.seed,
                progress=False,
                dataset_root=snapshot.root,
                max_users=settings.gate.max_users,  # the gate's users are drawn by the same rule
            )
            detail.update({name: report["models"][name] for name in report["models"]})
        with self.step("gate") as detail:
            from evaluation.gate import quality_gate

            decision = quality_gate(
                self.run_dir,
                base,
                settings.gate,
                floor=recorded_scores(self.registry),
                dataset_root=snapshot.root,
            )
            self.summary.gate = decision.to_json()
            write_json_atomic(self.run_dir / "gate.json", self.summary.gate)
            detail.update(
                passed=decision.passed, decided_by=decision.decided_by, reason=decision.reason
            )
        if not decision.passed:
            self.summary.outcome = Outcome.REFUSED
            self.summary.message = (
                f"kept {current} (decided by {decision.decided_by}): {decision.reason}"
            )
            self._retention()
            return
        with self.step("publish") as detail:
            from pipeline.registry import publish_run

            version_id = publish_run(
                self.run_dir,
                self.registry,
                dataset_root=snapshot.root,
                warm_min_listeners=settings.warm_min_listeners,
                source=snapshot.source,
                parent_version=current,
                spark_master=self._spark_master(),
                index_settings=settings.index,
                listens_through=snapshot.listens_through,
                provenance={
                    "run_id": self.summary.run_id,
                    "snapshot": snapshot.to_json(),
                    "gate": self.summary.gate,
                    "drift": self.summary.drift,
                },
            )
            detail["version_id"] = version_id
            left_out = _left_out_of(self.registry, version_id)
            detail["left_out"] = len(left_out)
        self.summary.leave_out(left_out, "publish")
        self.summary.version_id = version_id
        self.summary.outcome = Outcome.PUBLISHED
        self.summary.message = (
            f"published {version_id}"
            + (f" (replaces {current})" if current else "")
            + f" (decided by {decision.decided_by}): {decision.reason}"
        )
        self._retention()

    def _spark_master(self) -> str | None:
        """The master Spark jobs run on, or None for the single-machine path."""
        if self.settings.engine != "spark":
            return None
        from cluster.spark import DEFAULT_MASTER, MASTER_ENV

        return self.settings.spark_master or os.environ.get(MASTER_ENV, DEFAULT_MASTER)

    def _snapshot(self, base: RetrainingBase | None) -> Snapshot:
        from pipeline.snapshot import SNAPSHOT_DIR, snapshot_catalogue, use_dataset

        settings = self.settings
        with self.step("snapshot") as detail:
            if settings.database_url is None:
                assert settings.dataset is not None  # one of the two, checked by the settings
                snapshot = use_dataset(settings.dataset)
            else:
                from catalogue import open_catalogue
                from catalogue.db import default_audio_store

                fallback = _dataset_audio_of(base)
                store = settings.audio_store or default_audio_store(settings.database_url)
                if store is None:
                    log.warning("no audio store named: tracks added by audio have no recording")
                with open_catalogue(settings.database_url, store) as catalogue:
                    snapshot = snapshot_catalogue(
                        catalogue, settings.work / SNAPSHOT_DIR, fallback_audio=fallback
                    )
            detail.update(source=snapshot.source, root=str(snapshot.root), **snapshot.counts)
        return snapshot

    def _featurize(self, root: Path, plan: EncoderPlan, base: RetrainingBase | None) -> None:
        """Cache the mels of every front end the run reads: the one the encoder trains
        behind (the current encoder's when fine-tuning, else its architecture's, also the
        fallback when fine-tuning is refused), and the current encoder's (the gate's)."""
        settings = self.settings
        own = default_front_end(plan.architecture)
        current = [base.encoder.config] if base is not None else []
        front_ends = [*current, own, *current] if plan.fine_tune else [own, *current]
        failed: dict[str, str] = {}
        with self.step("featurize") as detail:
            for config in dict.fromkeys(front_ends):
                if settings.engine == "spark":
                    from audio.spark_featurize import featurize_on_spark

                    featurized = featurize_on_spark(
                        root, config=config, spark_master=settings.spark_master, progress=False
                    )
                else:
                    from audio.cache import featurize_dataset

                    featurized = featurize_dataset(
                        root, config=config, workers=settings.workers, progress=False
                    )
                counts = {
                    "computed": featurized.computed,
                    "up_to_date": featurized.skipped_up_to_date,
                    "failed": len(featurized.failed),
                    "cached": featurized.cached,
                }
                if not detail:
                    detail.update(counts)  # the front end the encoder trains behind
                detail.setdefault("front_ends", {})[config.fingerprint()[:12]] = counts
                failed.update(featurized.failed)
        self.summary.leave_out(failed, "featurize")

    def _factorize(self, root: Path, base: RetrainingBase | None) -> None:
        from factorization.run import factorize_run
        from factorization.warm_start import WarmStart
        from factorization.wmf import WMFParams

        settings = self.settings
        with self.step("factorize") as detail:
            warm = None
            test_songs_file = None
            n_factors = settings.factors
            if base is not None:
                n_factors = int(base.user_factors.shape[1])
                # Spark's ALS takes no initial factors: on Spark every night starts cold.
                can_warm = settings.engine == "local" and not settings.from_scratch
                if base.song_ids is not None and base.song_factors is not None and can_warm:
                    warm = WarmStart(
                        base.version_id,
                        base.user_ids,
                        base.user_factors,
                        base.song_ids,
                        base.song_factors,
                    )
                test_songs_file = self._kept_test_songs(root, base.test_song_ids)
            params = WMFParams(
                factors=n_factors,
                regularization="auto",  # searched, unless given or reused below
                iterations=settings.wmf_iterations,
                seed=settings.seed,
            )
            reused_from = None
            if settings.regularization is not None:
                params = dataclasses.replace(params, regularization=settings.regularization)
            elif base is not None and not settings.from_scratch:
                recorded = recorded_regularization(base, params)
                if recorded is not None:
                    params = dataclasses.replace(params, regularization=recorded)
                    reused_from = base.version_id
            manifest = factorize_run(
                root,
                self.run_dir,
                params,
                test_songs_file=test_songs_file,
                seed=settings.seed,
                progress=False,
                warm_start=warm,
                engine="spark" if settings.engine == "spark" else "implicit",
                spark_master=settings.spark_master,
                regularization_reused_from=reused_from,
            )
            warm_info = manifest.get("warm_start")
            self.summary.drift = warm_info.get("drift") if warm_info else None
            detail.update(
                factors=n_factors,
                regularization=manifest["parameters"]["regularization"],
                regularization_from=manifest["parameters"]["regularization_from"],
                warm_start_from=base.version_id if warm and base else None,
                test_split="kept" if test_songs_file else "drawn",
                **manifest["counts"],
            )
            if self.summary.drift:
                songs = self.summary.drift.get("songs", {})
                detail["song_drift_mean_cosine"] = songs.get("mean_cosine")

    def _kept_test_songs(self, root: Path, test_song_ids: list[str] | None) -> Path | None:
        """The current version's test songs still in the catalogue, as a file for the split."""
        from corpus.dataset import SONGS_FILE, read_songs

        if not test_song_ids:
            return None
        present = set(read_songs(root / SONGS_FILE)["song_id"])
        kept = [song_id for song_id in test_song_ids if song_id in present]
        if not kept or len(kept) < MIN_KEPT_TEST_SHARE * len(test_song_ids):
            log.warning(
                "only %d of the %d current test songs remain: drawing a new split",
                len(kept),
                len(test_song_ids),
            )
            return None
        path = self.run_dir / TEST_SONGS_FILE
        path.write_text("".join(f"{song_id}\n" for song_id in kept))
        return path

    def _train(self, root: Path, base: RetrainingBase | None, plan: EncoderPlan) -> None:
        from training.run import BASELINE_DEFAULTS, KMEANS_DEFAULTS, train_run
        from training.run_data import TrainingError

        settings = self.settings
        classical = settings.classical_models
        linear = BASELINE_DEFAULTS if classical else None
        kmeans = KMEANS_DEFAULTS if classical else None
        with self.step("train") as detail:
            init = base.encoder_dir if plan.fine_tune and base is not None else None
            fresh = settings.cnn.for_encoder(plan.architecture)
            cnn = (
                fresh
                if init is None
                else dataclasses.replace(fresh, epochs=settings.fine_tune_epochs)
            )
            detail.update(
                architecture=plan.architecture,
                previous_architecture=base.encoder.name if base else None,
                from_scratch=plan.from_scratch,
            )
            try:
                manifests = train_run(
                    self.run_dir,
                    dataset_root=root,
                    seed=settings.seed,
                    cnn=cnn,
                    linear=linear,
                    kmeans=kmeans,
                    progress=False,
                    init_encoder=init,
                )
            except TrainingError as error:
                if init is None:
                    raise
                log.warning("cannot fine-tune from %s (%s): training from scratch", init, error)
                detail["fine_tune_refused"] = str(error)
                detail["from_scratch"] = f"fine-tuning refused: {error}"
                init = None
                manifests = train_run(
                    self.run_dir,
                    dataset_root=root,
                    seed=settings.seed,
                    cnn=fresh,
                    linear=linear,
                    kmeans=kmeans,
                    progress=False,
                )
            cnn_manifest = manifests[CNN_NAME]
            detail.update(
                fine_tuned_from=base.version_id if init and base else None,
                epochs_run=cnn_manifest.get("epochs_run"),
                validation_map=cnn_manifest.get("validation", {}).get("map"),
                train_songs=cnn_manifest.get("train_songs"),
            )

    def _retention(self) -> None:
        from pipeline.registry import prune_versions

        with self.step("retention") as detail:
            detail["versions_pruned"] = prune_versions(self.registry, self.settings.keep_versions)
            detail["runs_pruned"] = _prune_runs(
                self.settings.work / RUNS_DIR, self.settings.keep_runs, keep=self.run_dir.name
            )


def recorded_regularization(base: RetrainingBase, params: WMFParams) -> float | None:
    """The lambda `base`'s factors were fitted with, if it suits `params`' confidences (the
    same alpha and eps: lambda is on their scale); None for a version that records none."""
    fitted = base.manifest.get("factorization") or {}
    same_confidences = (fitted.get("alpha"), fitted.get("eps")) == (params.alpha, params.eps)
    if fitted.get("regularization") is None or not same_confidences:
        log.info(
            "version %s records no regularization for these confidences: searching",
            base.version_id,
        )
        return None
    return float(fitted["regularization"])


def recorded_scores(registry: Path) -> list[RecordedScore]:
    """What each kept version scored when it passed a nightly gate (its manifest's
    `pipeline.gate`: per model the candidate's numbers, and the test songs' digest);
    versions published otherwise (`coldstart publish`, an older gate) recorded none, and a
    version rolled back from (`pipeline.registry.withdrawn_versions`) counts for nothing:
    its numbers did not make it a version worth keeping."""
    from artifacts.manifest import read_manifest
    from pipeline.registry import list_versions, withdrawn_versions
    from pipeline.registry.layout import VERSION_KIND, version_folder

    scores = []
    withdrawn = withdrawn_versions(registry)
    for version_id in list_versions(registry):
        if version_id in withdrawn:
            continue
        folder = version_folder(registry, version_id)
        manifest = read_manifest(folder, kind=VERSION_KIND, verify=False)
        gate = (manifest.get("pipeline") or {}).get("gate") or {}
        models = {
            model: numbers
            for model, numbers in (gate.get("candidate") or {}).items()
            if isinstance(numbers, dict)
        }
        if gate.get("passed") and gate.get("test_songs") and models:
            scores.append(RecordedScore(version_id, str(gate["test_songs"]), models))
    return scores


def _prune_runs(runs_dir: Path, keep_count: int, keep: str) -> list[str]:
    """Delete all but the newest `keep_count` run folders (never `keep`, the live one)."""
    runs = sorted(path for path in runs_dir.iterdir() if path.is_dir())
    doomed = [path for path in runs[: max(0, len(runs) - keep_count)] if path.name != keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return [path.name for path in doomed]


def _left_out_of(registry: Path, version_id: str) -> dict[str, str]:
    """The songs publishing left out of `version_id` (unusable predictions), from its manifest."""
    from artifacts.manifest import read_manifest
    from pipeline.registry.layout import VERSION_KIND, VERSIONS_DIR

    folder = registry / VERSIONS_DIR / version_id
    manifest = read_manifest(folder, kind=VERSION_KIND, verify=False)  # verified as published
    return dict(manifest.get("left_out") or {})


def _dataset_audio_of(base: RetrainingBase | None) -> dict[str, Path]:
    """Recordings in the dataset folder a version was built from (for catalogue songs that
    were imported without their audio), or none."""
    if base is None:
        return {}
    from corpus.dataset import find_audio

    root = base.manifest["parameters"].get("dataset_root")
    return find_audio(Path(root)) if root and Path(root).is_dir() else {}


def _log_to(path: Path) -> logging.Handler:
    """Also log the `coldstart` loggers to the run's own log file."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("coldstart")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler
