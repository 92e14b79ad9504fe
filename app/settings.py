"""Server settings: one pydantic-settings class read from `DELBENCH_*` environment variables.

The defaults run a development server on this machine (SQLite under ./data, Redis on 127.0.0.1); outside
development the class refuses defaults that would be unsafe in production.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DELBENCH_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///data/delbench.sqlite"
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"  # Celery's, for the chord of finetunes only
    broker_key_prefix: str = ""  # Redis key prefix, so several deployments (or test runs) share one Redis
    broker_dir: Path | None = None  # the filesystem broker's folders; default DATA_DIR/broker
    data_dir: Path = Path("data")  # the encoder cache and the embedded broker's files live under it
    artifacts_dir: Path | None = None  # this host's encoder cache; default DATA_DIR/artifacts
    # where encoders cross hosts: a shared folder or s3://bucket/prefix (evaluator/artifacts.py); none: one host
    artifact_store: str | None = None
    artifact_store_endpoint: str | None = None  # an S3-compatible store's URL, when it is not AWS
    upload_max_bytes: int = 64 * 1024 * 1024  # ~2M pool IDs
    admin_token: SecretStr | None = None  # accepted by admin routes besides admin teams' tokens
    lease_seconds: float = 60.0  # a running stage whose heartbeat is older than this is presumed dead
    reconcile_seconds: float = 15.0  # how often a worker's reconciler runs; 0 turns it off
    max_attempts: int = 3  # a stage interrupted this many times fails the submission
    task_max_retries: int = 5  # Celery retries for transient errors (database, broker)
    progress_interval: float = 1.0  # at most one progress write per task per this many seconds
    log_tail_lines: int = 80
    device: str | None = None  # torch device for workers ("cuda", "cpu"); default: the evaluator's choice
    # A worker's pretraining over this many local processes (torchrun, one GPU each; gloo on CPU); the same
    # protocol whatever the number. pretrain_devices: their CUDA_VISIBLE_DEVICES, e.g. "0,1,2,3".
    pretrain_processes: int = Field(default=1, ge=1)
    pretrain_devices: str | None = None
    # Rate limits (the `limits` library's notation). Failed logins and bad tokens count per client address;
    # uploads per team. Kept in the broker's Redis when the broker is Redis, in memory otherwise (the demo).
    rate_limit_failed_auth: str = "20/minute"
    rate_limit_uploads: str = "30/minute"
    rate_limit_storage: str | None = None  # a `limits` storage URI; default as above

    @property
    def worker_alive_seconds(self) -> float:
        """Seconds without a heartbeat after which a worker counts as dead: three missed beats."""
        return 3 * (self.reconcile_seconds or 15.0)

    @property
    def cache_dir(self) -> Path:
        return (self.artifacts_dir or self.data_dir / "artifacts") / "cache"

    @property
    def rate_limit_storage_uri(self) -> str:
        if self.rate_limit_storage:
            return self.rate_limit_storage
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else "memory://"

    @property
    def filesystem_broker_dir(self) -> Path:
        return self.broker_dir or self.data_dir / "broker"

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == "development":
            return self
        problems = []
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        if len(token) < 32:
            problems.append("DELBENCH_ADMIN_TOKEN must be set to a random string of at least 32 characters")
        if self.database_url.startswith("sqlite"):
            problems.append(
                "DELBENCH_DATABASE_URL must name a PostgreSQL database (SQLite is for development)"
            )
        if problems:
            raise ValueError("unsafe settings for production: " + "; ".join(problems))
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
