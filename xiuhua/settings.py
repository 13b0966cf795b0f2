"""Settings from the environment (prefix XIUHUA_), shared by every service."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CITY = PROJECT_ROOT / "cities" / "demo"


class Settings(BaseSettings):
    """What a service needs to find its servers, its city and its limits."""

    model_config = SettingsConfigDict(env_prefix="XIUHUA_", extra="ignore")

    nats_url: str | None = Field(default=None, description="Real NATS servers; unset = embedded")
    mongo_url: str | None = Field(default=None, description="Real MongoDB; unset = embedded nx-27017")
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds_file: Path | None = None
    nats_inbox_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Where replies to this connection arrive (nats inbox_prefix); unset = `_INBOX_<NATS_USER>`, the "
        "only prefix the security model lets that user subscribe under (`_INBOX` without a user)",
    )
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    city_dir: Path = DEMO_CITY
    var_dir: Path = PROJECT_ROOT / "var"
    store_tx_lock_dir: Path | None = Field(
        default=None, description="Serialize transactions across processes (set for the embedded nx-27017)"
    )
    store_combined_writes: bool = Field(
        default=True,
        description="Send a small batch's writes to several collections as one client-level bulkWrite (MongoDB 8.0, "
        "nx-27017): a third off report -> dispatched at 50/s on the embedded store; off sends one bulk_write per "
        "collection (docs/decisions/0006-combined-writes.md)",
    )
    db_prefix: str = Field(default="xiuhua_", description="Each service's database is <prefix><service>")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, description="0 = any free port (written to var/endpoints.json)")
    hj212_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Intake's HJ 212-2017 TCP edge: unset = not started, 0 = any free port (`xiuhua up` picks one "
        "and writes it to var/endpoints.json as services.intake.hj212)",
    )
    hj212_host: str | None = Field(default=None, description="Address the HJ 212 edge listens on; unset = http_host")
    hj212_idle_s: float = Field(
        default=600.0, gt=0, description="A device connection silent this long is closed (devices send every minute)"
    )
    stream_replicas: int = Field(default=1, ge=1, le=5)
    write_concern: str = Field(default="majority", description="'majority' on a replica set; '1' alone")
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Most messages a consumer applies in one transaction; a batch is what is there at once, so this "
        "bounds bursts only (sensor readings through intake: 7,400/s at 128, 10,200/s at 1,000, same machine)",
    )
    max_deliver: int = Field(default=5, ge=1, description="Handler failures before a message is dead-lettered")
    ack_wait: float = Field(
        default=60.0,
        ge=5.0,
        le=3600.0,
        description="Seconds before JetStream redelivers a message an instance pulled and never answered "
        "(it died); longer than the slowest batch, short enough that a crash delays little",
    )
    follower_linger: float = Field(
        default=0.5,
        ge=0.0,
        le=5.0,
        description="Seconds a consumer nobody waits on (scores, the bulletin's figures) lets a batch gather before "
        "applying it: one transaction per linger instead of one per message at a modest rate, leaving the store to "
        "the hops from report to dispatch; 0 applies each message as it comes",
    )
    prompt_linger: float = Field(
        default=0.1,
        ge=0.0,
        le=5.0,
        description="The same for consumers people wait on in seconds, not milliseconds: alert planning (gateways "
        "take seconds) and the Open311 view (a citizen's POST waits for its case id)",
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "text", "json"] = Field(
        default="auto",
        description="auto: plain text on a terminal, one JSON object a line elsewhere (a file, a pipe, a collector)",
    )
    log_file: Path | None = Field(
        default=None,
        description="A service's log file, rotated (`xiuhua up` sets var/logs/<service>.log); unset = stderr",
    )
    log_max_bytes: int = Field(default=50 * 2**20, ge=1024, description="Size at which a log file is rotated")
    log_backups: int = Field(default=5, ge=1, le=100, description="Rotated log files kept beside each log (.1 … .N)")
    bulletin_base_url: str | None = Field(
        default=None,
        description="Public URL of the bulletin archive (var/bulletins), e.g. https://cg.example.gov.cn/bulletins; "
        "unset = notify's own /bulletins/ route when its HTTP port is fixed (`xiuhua up` fixes it)",
    )
    bulletin_schedule: bool = Field(
        default=True,
        description="Notify publishes each due weekly bulletin itself (Monday 15:00); false leaves it to "
        "`xiuhua bulletin` (a cron job, or `xiuhua bench`, which times the bulletin on its own)",
    )
    pseudonym_key: str = Field(
        default="xiuhua-demo-pseudonym-key", description="Key for reporter pseudonyms; set per city"
    )
    tracing: bool = Field(
        default=False, description="Send OpenTelemetry traces of each message's handling (xiuhua.tracing)"
    )
    tracing_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces; unset = the standard "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318",
    )
    tracing_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of reports traced (the first hop decides for the whole trace)"
    )

    def database(self, service: str) -> str:
        """The database a service owns."""
        return f"{self.db_prefix}{service}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (read once)."""
    return Settings()
