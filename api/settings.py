"""Settings: `NBA_` environment variables (the same as `nba serve`'s flags) → one object passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nba.vocab import (
    DEFAULT_DETRACTOR_WEIGHT,
    DEFAULT_VALUE_FLOOR_USD,
    MAX_DETRACTOR_WEIGHT,
    MAX_VALUE_FLOOR_USD,
)


class Settings(BaseSettings):
    """Everything the service reads from its environment, read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="NBA_", extra="forbid", frozen=True)

    models_dir: Path = Field(default=Path("models"), description="models folder; its CURRENT is served")
    profiles_dir: Path = Field(
        default=Path("profiles"), description="profile snapshots folder; its CURRENT is served"
    )
    profile_cache: Path | None = Field(
        default=None,
        description="where the model-encoded profiles every worker maps are cached "
        "(default: profile-cache beside the profiles folder)",
    )
    data_dir: Path = Field(
        default=Path("data_samples"), description="data directory whose catalog.yaml the service uses"
    )
    database_url: str = Field(default="sqlite:///var/feedback.db", max_length=2000)
    buffer_path: Path = Field(
        default=Path("var/decision-buffer.jsonl"),
        description="where decisions wait while the database is down, replayed when it is back",
    )
    api_keys_file: Path | None = Field(default=None, description="JSON list of {name, role, sha256}")
    api_keys: str | None = Field(default=None, description="the same JSON inline (NBA_API_KEYS)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    production: bool = False
    watch_interval_s: float = Field(
        default=5.0, ge=0, description="how often CURRENT files are checked for a change (0: never)"
    )
    read_deadline_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a request's head, and then its body, must arrive within this long (else 408)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="worker processes on this machine, one port (uvicorn's supervisor)",
    )
    drain_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="after SIGTERM: how long /healthz/lb answers 503 while requests are still served",
    )
    contact_poll_s: float = Field(
        default=0.2,
        ge=0,
        le=60,
        description="how often outcomes recorded by other workers and replicas are read (0: never)",
    )
    epsilon: float = Field(default=0.0, ge=0, le=1, description="ε-exploration share of calls")
    value_floor_usd: float = Field(
        default=DEFAULT_VALUE_FLOOR_USD,
        ge=0,
        le=MAX_VALUE_FLOOR_USD,
        description="a benefit worth less than this a year to the cardholder is not suggested (0: no floor)",
    )
    detractor_weight: float = Field(
        default=DEFAULT_DETRACTOR_WEIGHT,
        ge=0,
        le=MAX_DETRACTOR_WEIGHT,
        description="the NPS term: rank by score − this × the detractors a pitch adds, leaving out a pitch not "
        "worth them (0: off; above 0 the model needs a detractor model)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    frame_ancestors: str = Field(
        default="'self' http://127.0.0.1:* http://localhost:*",
        max_length=1000,
        pattern=r"^[^;,\r\n]*$",
        description="who may embed the agent panel in a frame (CSP frame-ancestors): the desktop's origin",
    )

    @property
    def profile_cache_dir(self) -> Path:
        """The profile cache folder: `profile_cache`, else `profile-cache` beside the profiles folder."""
        return self.profile_cache or self.profiles_dir.parent / "profile-cache"
