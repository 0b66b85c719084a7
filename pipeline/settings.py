"""The one place that reads the environment.

Every value has a default that runs Clipline embedded on one machine (SQLite, local folders,
ONNX Runtime in process). Production sets the service URLs through ``CLIPLINE_*`` variables.
A bad value fails at start-up and pydantic names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.callback_address import CallbackPolicy, parse_networks
from pipeline.errors import ModelError
from pipeline.fields import BUCKET
from pipeline.imaging.decode import DEFAULT_FORMATS, DecodeLimits
from pipeline.models import DEFAULT_MODEL, parse_model_list
from pipeline.tenants import UploadArea


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLIPLINE_", env_file=None, extra="forbid", frozen=True
    )

    # -- where things live ------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("clipline-data"),
        description="Folder for the embedded ledger, models and local outputs.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger; unset means SQLite at DATA_DIR/ledger.sqlite3. "
        "Production: postgresql+psycopg://user@host/db.",
    )
    models_dir: Path | None = Field(
        default=None, description="Folder of model files; unset means DATA_DIR/models."
    )
    model: str = Field(
        default=DEFAULT_MODEL, description="The default model: what a job gets when its request "
        "names none (a model spec's name, `clipline models list`).")
    served_models: str = Field(
        default="", description="Comma-separated models this deployment serves, side by side; "
        "a request may name any of them (`model`). Empty: just MODEL. MODEL must be among "
        "them; each is a known spec or a trained model registered in the models folder.")

    # -- services (production) --------------------------------------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker (wake-up only)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (AWS when unset; MinIO or moto by URL)."
    )
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_output_bucket: str | None = Field(default=None, description="Bucket for cut-outs.")
    s3_connect_timeout_seconds: PositiveFloat = Field(
        default=5.0, description="S3 connect timeout."
    )
    s3_read_timeout_seconds: PositiveFloat = Field(default=30.0, description="S3 read timeout.")
    s3_max_attempts: PositiveInt = Field(
        default=4, description="Tries per S3 call, botocore's standard retry mode included."
    )
    s3_max_pool_connections: PositiveInt = Field(
        default=20, description="S3 connections kept per process."
    )
    segmenter: Literal["onnx", "triton", "fake"] = Field(
        default="onnx",
        description="Run the model in process (onnx), on a Triton server (triton), or use a "
        "colour-distance stand-in at 64x64 with no model (fake: orchestration benchmarks only).",
    )
    triton_url: str = Field(
        default="127.0.0.1:8001",
        description="Triton address, host:port of the gRPC endpoint (of HTTP with "
        "TRITON_PROTOCOL=http).",
    )
    triton_protocol: Literal["grpc", "http"] = Field(
        default="grpc", description="How the Triton segmenter talks to Triton."
    )
    triton_model: str | None = Field(
        default=None, description="Name the default model (MODEL) has on Triton; unset: its "
        "spec's name. Every other served model is asked for under its own spec's name."
    )
    triton_model_version: str = Field(
        default="", description="Model version on Triton; empty: the server's latest."
    )
    triton_timeout_seconds: PositiveFloat = Field(
        default=30.0, description="Deadline of every Triton call, inference included."
    )

    # -- distributed workers (Celery on Redis) --------------------------------------------------
    object_store: Literal["s3", "folder"] = Field(
        default="s3",
        description="Where workers read sources and write cut-outs: S3, or local folders (a "
        "job's bucket is then a folder path; for benchmarks and single-host use).",
    )
    output_prefix: str = Field(default="cutouts", description="Key prefix of cut-outs.")
    worker_concurrency: PositiveInt | None = Field(
        default=None, description="Worker processes per `clipline worker`; unset: CPU count."
    )
    worker_max_memory_per_child_mb: PositiveInt = Field(
        default=2048, description="A worker process above this resident size is replaced. "
        "ONNX Runtime in process with u2net, the default model, peaks at about 1 GiB before "
        "any image (1008 MiB measured; u2netp: 598 MiB), so 1024 would replace it after every "
        "job.",
    )
    task_soft_time_limit_seconds: PositiveFloat = Field(
        default=120.0, description="A job still running after this fails with timeout (retried)."
    )
    task_time_limit_seconds: PositiveFloat = Field(
        default=180.0, description="Hard limit: the worker process is killed and replaced; the "
        "job's lease then expires and the reconciler takes it back.",
    )
    broker_visibility_timeout_seconds: PositiveFloat = Field(
        default=300.0, description="Redis re-delivers an unacknowledged message after this: "
        "what a killed worker held (its running tasks and the countdown messages it was "
        "keeping) comes back then. Must exceed the hard time limit plus the longest countdown.",
    )
    interactive_priority: int = Field(
        default=5, description="Jobs of this priority or more go to the `interactive` queue, "
        "the rest to `bulk`; workers take interactive first.",
    )
    breaker_threshold: PositiveInt = Field(
        default=3, description="Outage failures in a row (Triton, S3, the database) after which "
        "a worker process stops taking jobs and probes the dependency instead.")
    breaker_probe_seconds: PositiveFloat = Field(
        default=5.0, description="How often a stopped worker process lets one job through to "
        "see whether the dependency is back.")
    heartbeat_seconds: PositiveFloat = Field(
        default=30.0, description="How often a worker extends a job's lease while it works."
    )
    max_countdown_seconds: PositiveFloat = Field(
        default=60.0, description="A retry due sooner is re-published with a countdown; a "
        "later one is left to the reconciler (no long ETA messages in Redis).",
    )
    worker_metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="Port of a worker's Prometheus metrics "
        "(all its pool processes summed); 0 turns it off.")
    reconcile_metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="Port of the reconciler's Prometheus "
        "metrics (queue depth, re-published, reaped); 0 turns it off.")
    events_metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="Port of `clipline events`' Prometheus "
        "metrics (0: off).")
    celery_events: bool = Field(
        default=True, description="Workers send Celery task events (for Flower); about one "
        "Redis publish per task state change.")
    reconcile_interval_seconds: PositiveFloat = Field(
        default=10.0, description="Pause between reconciler passes."
    )
    reconcile_batch_size: PositiveInt = Field(
        default=1000, description="Jobs reaped or published per reconciler batch."
    )
    reconcile_lost_after_seconds: PositiveFloat = Field(
        default=300.0, description="A queued job whose message is older than this, while the "
        "broker has drained, is published again (Redis lost it).",
    )
    batch_settle_after_seconds: PositiveFloat = Field(
        default=86400.0, description="An API batch still expanding or publishing this long "
        "after it was created (its API process stopped) is settled by the reconciler: ready "
        "if its jobs were recorded, else failed with expansion_lost. Longer than the longest "
        "expansion.",
    )

    # -- S3 event intake (clipline events) -------------------------------------------------
    sqs_queue_url: str | None = Field(
        default=None, description="SQS queue that receives the buckets' ObjectCreated "
        "notifications, read by `clipline events`.")
    sqs_endpoint_url: str | None = Field(
        default=None, description="SQS endpoint (AWS when unset; moto or ElasticMQ by URL).")
    events_rules_file: Path | None = Field(
        default=None, description="TOML file of rules: bucket and key prefix → tenant, "
        "priority and output options.")
    events_webhook_secret: SecretStr | None = Field(
        default=None, description="Shared secret of `POST /v1/events/webhook` (Bearer); the "
        "webhook is off while it or the rules file is unset.")
    events_max_receives: PositiveInt = Field(
        default=5, description="An event that cannot be parsed is dropped (logged) after this "
        "many receives when the queue has no redrive policy; with one, SQS moves it to the DLQ.")

    # -- HTTP API ---------------------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address `clipline api` listens on.")
    api_port: PositiveInt = Field(default=8080, description="Port `clipline api` listens on.")
    api_rate_per_second: PositiveFloat = Field(
        default=50.0, description="Requests per second allowed per API key (per API process).")
    api_rate_burst: PositiveInt = Field(default=100, description="Requests a key may burst.")
    api_max_body_bytes: PositiveInt = Field(
        default=10 * 1024 * 1024, description="Largest request body accepted (413 above).")
    api_max_manifest_bytes: PositiveInt = Field(
        default=1024 * 1024 * 1024, description="Largest manifest object read from S3.")
    api_presign_seconds: PositiveInt = Field(
        default=3600, description="Lifetime of the presigned GET URL of a finished cut-out.")
    upload_bucket: str | None = Field(
        default=None, description="Bucket of images uploaded through the API (`POST /v1/jobs` "
        "multipart, `POST /v1/uploads`), under UPLOAD_PREFIX/<tenant>/; unset: "
        "S3_OUTPUT_BUCKET.")
    upload_prefix: str = Field(
        default="uploads", min_length=1, description="Key prefix of uploaded images (then "
        "tenant, then the sha256 of the bytes, or a random id for a presigned PUT). Each "
        "tenant may read its own uploads there and no other tenant's, whatever its allowlist "
        "says.")
    upload_max_bytes: PositiveInt = Field(
        default=8 * 1024 * 1024, description="Largest image `POST /v1/jobs` takes in a "
        "multipart body (413 upload_too_large above); must be below API_MAX_BODY_BYTES, which "
        "the door applies to the whole form first. Larger files: `POST /v1/uploads`, up to "
        "MAX_INPUT_BYTES.")
    upload_url_seconds: PositiveInt = Field(
        default=900, description="Lifetime of the presigned PUT URL `POST /v1/uploads` hands "
        "out.")
    removebg_wait_seconds: PositiveFloat = Field(
        default=30.0, description="How long `POST /v1.0/removebg` waits for its job before it "
        "answers 504 with the job's id to poll.")
    removebg_poll_seconds: PositiveFloat = Field(
        default=0.2, description="How often `POST /v1.0/removebg` reads its job's state.")
    removebg_max_image_bytes: PositiveInt = Field(
        default=7 * 1024 * 1024, description="Largest image `POST /v1.0/removebg` takes in "
        "its body (413 above); base64 adds a third, so keep it under API_MAX_BODY_BYTES.")

    callbacks_allow_http: bool = Field(
        default=False, description="Accept plain-http callback URLs (local development only).")
    callbacks_allow_networks: str = Field(
        default="", description="Comma-separated IP networks callbacks may reach although "
        "they are loopback, private or link-local, e.g. 127.0.0.1/32 (local development "
        "only; empty: public addresses only).")
    callback_max_attempts: PositiveInt = Field(
        default=8, description="Deliveries of a completion callback before it is marked failed.")

    # -- input safety -----------------------------------------------------------------------
    max_pixels: PositiveInt = Field(
        default=50_000_000,
        description="Largest image accepted (width x height), checked on the header before "
        "decoding; larger ones fail with too_many_pixels.",
    )
    max_input_bytes: PositiveInt = Field(
        default=256 * 1024 * 1024, description="Largest source file accepted (object_too_large)."
    )
    allow_gif: bool = Field(
        default=False, description="Accept still GIFs (animated images are always refused)."
    )

    # -- ledger behaviour -------------------------------------------------------------------
    lease_seconds: PositiveFloat = Field(
        default=120.0, description="How long a claim holds a job before it may be reaped."
    )
    max_attempts: PositiveInt = Field(default=5, description="Attempts before a job is dead.")
    backoff_base_seconds: PositiveFloat = Field(
        default=2.0, description="First retry delay; doubles each attempt, with jitter."
    )
    backoff_max_seconds: PositiveFloat = Field(default=600.0, description="Retry delay cap.")
    outage_budget_seconds: NonNegativeFloat = Field(
        default=21600.0,
        description="How long a job waits out a dependency that is down (Triton, S3, the "
        "database) before it is dead with that reason; such failures spend no attempts. "
        "0: they spend attempts like any other.",
    )
    outage_retry_max_seconds: PositiveFloat = Field(
        default=60.0, description="Longest delay between a job's tries during an outage."
    )
    db_pool_size: PositiveInt = Field(default=5, description="Connections kept per process.")
    db_pool_timeout_seconds: PositiveFloat = Field(
        default=10.0, description="Wait for a pooled connection before giving up."
    )
    db_statement_timeout_seconds: PositiveFloat = Field(
        default=30.0, description="PostgreSQL statement_timeout / SQLite busy timeout."
    )

    # -- logging ----------------------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written."
    )

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        # Redis re-delivers a message that stays unacknowledged past the visibility timeout. A
        # countdown message is unacknowledged from its delivery (the worker keeps it until it
        # is due) until its task ends: keep that whole wait inside the timeout.
        longest = self.task_time_limit_seconds + self.max_countdown_seconds
        if self.broker_visibility_timeout_seconds <= longest:
            raise ValueError(
                "broker_visibility_timeout_seconds must exceed task_time_limit_seconds + "
                "max_countdown_seconds"
            )
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError("task_soft_time_limit_seconds must be below task_time_limit_seconds")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be below lease_seconds")
        # Set explicitly, the upload limit must fit in a body; by default the door's is the
        # lower one where a test or a deployment made API_MAX_BODY_BYTES small.
        if ("upload_max_bytes" in self.model_fields_set
                and self.upload_max_bytes >= self.api_max_body_bytes):
            raise ValueError("upload_max_bytes must be below api_max_body_bytes (the door "
                             "refuses the larger body before the image is read)")
        return self

    # data_dir and models_dir come before model and served_models, so their validators see the
    # models folder: a trained model (a card there, ``clipline models register``) is known too.
    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str, info: ValidationInfo) -> str:
        # an unknown name fails at start, naming the variable
        if _known(value, _folder_of(info.data)) != (value,):
            raise ValueError(f"one model name expected, got {value!r}")
        return value

    @field_validator("served_models")
    @classmethod
    def _served_known(cls, value: str, info: ValidationInfo) -> str:
        names = _known(value, _folder_of(info.data))
        default = info.data.get("model")  # absent when MODEL itself was refused
        if names and default is not None and default not in names:
            raise ValueError(f"the default model {default!r} (CLIPLINE_MODEL) is not among the "
                             f"served models {', '.join(names)}")
        return value

    @field_validator("upload_bucket")
    @classmethod
    def _upload_bucket_named(cls, value: str | None) -> str | None:
        return None if value is None else BUCKET.check(value)  # InvalidField is a ValueError

    @field_validator("callbacks_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a bad entry fails at start, naming the variable
        return value

    @cached_property
    def callback_policy(self) -> CallbackPolicy:
        return CallbackPolicy(allow_http=self.callbacks_allow_http,
                              allow_networks=parse_networks(self.callbacks_allow_networks))

    @cached_property
    def served(self) -> tuple[str, ...]:
        """The models served, the default (MODEL) first, then the others in their given order."""
        others = parse_model_list(self.served_models, self.model_folder)
        return (self.model, *(name for name in others if name != self.model))

    @cached_property
    def decode_limits(self) -> DecodeLimits:
        formats = DEFAULT_FORMATS | ({"GIF"} if self.allow_gif else set())
        return DecodeLimits(
            max_pixels=self.max_pixels, max_bytes=self.max_input_bytes, formats=formats
        )

    @cached_property
    def upload_area(self) -> UploadArea | None:
        """Where uploaded images go; None when no bucket is set for them."""
        bucket = self.upload_bucket or self.s3_output_bucket
        return None if bucket is None else UploadArea(bucket, self.upload_prefix.strip("/"))

    @cached_property
    def ledger_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ledger.sqlite3').resolve()}"

    @cached_property
    def model_folder(self) -> Path:
        return _model_folder(self.data_dir, self.models_dir)


def _model_folder(data_dir: Path, models_dir: Path | None) -> Path:
    return models_dir if models_dir is not None else data_dir / "models"


def _folder_of(data: Mapping[str, Any]) -> Path | None:
    """The models folder from the fields validated so far; None when DATA_DIR or MODELS_DIR was
    refused (then only the built-in models are known, and that variable's error is reported)."""
    if "data_dir" not in data or "models_dir" not in data:
        return None
    return _model_folder(data["data_dir"], data["models_dir"])


def _known(text: str, models_dir: Path | None) -> tuple[str, ...]:
    """The model names in ``text`` (``parse_model_list``, trained models in ``models_dir``
    included); an unknown one, or a malformed card, as a ``ValueError``, which pydantic reports
    against the variable."""
    try:
        return parse_model_list(text, models_dir)
    except ModelError as exc:
        raise ValueError(exc.message) from exc
