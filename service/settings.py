"""The service's settings: one pydantic-settings class, every variable prefixed COLDSTART_.

    COLDSTART_REGISTRY            the model registry folder (`coldstart publish --registry`)
    COLDSTART_DATABASE_URL        the catalogue DB (default: a SQLite file in the working folder)
    COLDSTART_AUDIO_STORE         folder of the content-addressed audio of added tracks
                                  (default: `<database file>.audio/` beside a SQLite file)
    COLDSTART_API_KEYS            comma-separated keys accepted as `Authorization: Bearer <key>`
    COLDSTART_READ_REQUIRES_KEY   true: reads need a key too (default false: only writes do)
    COLDSTART_ENVIRONMENT         "development" (default) or "production"
    COLDSTART_MAX_UPLOAD_BYTES    largest accepted upload (413 above it)
    COLDSTART_MAX_AUDIO_SECONDS   seconds of an upload that are decoded (the rest is ignored)
    COLDSTART_INFERENCE_SLOTS     uploads decoded and embedded at once (each on its threads)
    COLDSTART_DECODE_WORKERS      processes that decode uploads (`service.decode_pool`; default 2)
    COLDSTART_DECODE_MEMORY_MB    address space a decode worker may add for one upload
                                  (default 1024; past it: 422 audio_decode_out_of_memory)
    COLDSTART_DECODE_CPU_SECONDS  CPU seconds of one upload's decode (default 20)
    COLDSTART_DECODE_DEADLINE_SECONDS  wall-clock seconds of one upload's decode (default 30;
                                  past either: 422 audio_decode_timeout)
    COLDSTART_TORCH_THREADS       intra-op threads torch uses per embedding
    COLDSTART_MODEL_POLL_SECONDS  how often `REG/current` is read for a newly published
                                  version, which then replaces the served one without a
                                  restart (default 5; 0: never, serve the one loaded at start)
    COLDSTART_CATALOGUE_POLL_SECONDS  how often the catalogue's change log is read for
                                  tracks that other replicas added or deleted, which then
                                  enter or leave this replica's index (default 2; 0: never)
    COLDSTART_INDEX_NPROBE        lists an IVF-PQ index searches per query (default: the
                                  version's own); more is better recall, slower searches
    COLDSTART_LOG_LEVEL           the service's own log lines (coldstart.*): DEBUG, INFO
                                  (default), WARNING or ERROR
    COLDSTART_LOG_FORMAT          text (default) or json: one object per line, for a log
                                  collector (uvicorn's lines too; `service.logs`)
    COLDSTART_FOLDED_USERS_KEPT   folded-in user vectors kept per replica until the next
                                  version (default 100000; the least recent beyond it are
                                  solved again when asked for: a millisecond or so each)

Production mode fails fast, at start-up, when no API key is set or a key is short: a
service that accepts writes from anyone, or keys that can be guessed, must not start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from catalogue.db import DEFAULT_DATABASE_URL, default_audio_store
from service.decode_worker import DecodeWorkerLimits
from service.logs import LogFormat, LogLevel

MIN_PRODUCTION_KEY_LENGTH = 16


class Settings(BaseSettings):
    """What the service needs to know to start; see the module docstring for the variables."""

    model_config = SettingsConfigDict(env_prefix="COLDSTART_", extra="ignore", frozen=True)

    registry: Path = Path("registry")
    database_url: str = DEFAULT_DATABASE_URL
    audio_store: Path | None = None
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    read_requires_key: bool = False
    environment: Literal["development", "production"] = "development"
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_audio_seconds: float = Field(default=600.0, ge=3.0)
    max_listens_per_request: int = Field(default=1000, ge=1)
    inference_slots: int = Field(default=2, ge=1)
    torch_threads: int = Field(default=1, ge=1)
    decode_workers: int = Field(default=2, ge=1)
    decode_memory_mb: int = Field(default=1024, ge=16)
    decode_cpu_seconds: float = Field(default=20.0, ge=1.0)
    decode_deadline_seconds: float = Field(default=30.0, gt=0.0)
    model_poll_seconds: float = Field(default=5.0, ge=0.0)
    catalogue_poll_seconds: float = Field(default=2.0, ge=0.0)
    index_nprobe: int | None = Field(default=None, ge=1)
    folded_users_kept: int = Field(default=100_000, ge=1)
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """COLDSTART_API_KEYS="key1,key2": split on commas, drop blanks."""
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.environment == "production":
            if not self.api_keys:
                raise ValueError("COLDSTART_API_KEYS must be set in production")
            if any(
                len(key.get_secret_value()) < MIN_PRODUCTION_KEY_LENGTH for key in self.api_keys
            ):
                raise ValueError(
                    f"every API key must have at least {MIN_PRODUCTION_KEY_LENGTH} characters"
                    " in production"
                )
        return self

    def decode_worker_limits(self) -> DecodeWorkerLimits:
        """The decode pool's size and limits (`service.decode_pool`)."""
        return DecodeWorkerLimits(
            workers=self.decode_workers,
            memory_mb=self.decode_memory_mb,
            cpu_seconds=self.decode_cpu_seconds,
            deadline_seconds=self.decode_deadline_seconds,
        )

    def audio_store_dir(self) -> Path:
        """`audio_store`, or `<file>.audio/` beside a SQLite database file."""
        if self.audio_store is not None:
            return self.audio_store
        beside = default_audio_store(self.database_url)
        if beside is not None:
            return beside
        raise ValueError("set COLDSTART_AUDIO_STORE: the database is not a SQLite file")
