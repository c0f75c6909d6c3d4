"""Settings from the environment only (secrets included), validated once at start-up.

Why: a misconfigured worker must stop at once with one clear line, not fail later mid-stream.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

# The current Sonnet-class model in the installed SDK's model list (`anthropic.types.Model`), not in its
# deprecation table; tests/test_claude_drafter.py checks both against the installed SDK.
DEFAULT_MODEL = "claude-sonnet-5-5"


class ConfigError(SystemExit):
    """Raised with a one-line message; exits the process with status 2 if not caught."""

    def __init__(self, message: str) -> None:
        super().__init__(f"milestones: configuration error: {message}")
        self.code = 2


class Strict(BaseModel):
    """A configuration-file model: unknown keys are mistakes, values are fixed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def load_config_file(model: type[M], path: Path | str, what: str) -> M:
    """A YAML file validated by `model`; any mistake is a `ConfigError` naming the file and field."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return model.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(map(str, e["loc"])) or "(top level)"
        raise ConfigError(f"{what} file {path}: {where}: {e['msg']}") from None


class Settings(BaseModel):
    """Every knob, with its environment variable in the field's alias."""

    bootstrap_servers: str | None = Field(None, alias="KAFKA_BOOTSTRAP_SERVERS")
    app_id: str = Field("milestone-stream", alias="MILESTONES_APP_ID", min_length=1)
    topic_prefix: str = Field("", alias="MILESTONES_TOPIC_PREFIX")
    partitions: int = Field(6, alias="MILESTONES_PARTITIONS", ge=1, le=1000)
    replication_factor: int = Field(1, alias="MILESTONES_REPLICATION_FACTOR", ge=1)
    guarantee: Literal["at_least_once", "exactly_once"] = Field("at_least_once", alias="MILESTONES_GUARANTEE")
    commit_interval: float = Field(0.2, alias="MILESTONES_COMMIT_INTERVAL", gt=0)
    # the usage agent takes telemetry in batches: one row write per account per batch, and one wait for the
    # batch's milestone acks and one changelog batch per partition (2,000 rather than 500: 1.18-1.26 x the
    # events/s for about 20 MiB more peak RSS, bench/results.md 2026-11-26 17:06 and 17:51; a fetch holds
    # at most app.MAX_POLL_RECORDS)
    batch_size: int = Field(2000, alias="MILESTONES_BATCH_SIZE", ge=1, le=100_000)
    batch_seconds: float = Field(0.05, alias="MILESTONES_BATCH_SECONDS", gt=0, le=10)
    # the usage agent takes telemetry a fetch at a time past Faust's per-message path (faust_compat/drain.py);
    # off: through Faust's stream (the before of bench/results.md; always so under exactly_once)
    batch_consume: bool = Field(True, alias="MILESTONES_BATCH_CONSUME")
    # RocksDB tables read and written as bytes, memory tables in their dict, past Faust's store layers
    # (faust_compat/tables.py); off: through Faust's store and serializers (the before of bench/results.md;
    # the changelog records go in batches either way)
    table_bytes: bool = Field(True, alias="MILESTONES_TABLE_BYTES")
    # all of a worker's RocksDB databases share one block cache of this size, their memtables charged to it
    # (faust_compat/rocksdb_memory.py): memory flat in the number of accounts (bench/scale.py); 0: a cache and
    # write buffers per database, as Faust opens them
    rocksdb_memory_mb: int = Field(64, alias="MILESTONES_ROCKSDB_MEMORY_MB", ge=0, le=65_536)
    # standby copies of each table partition kept warm by the other workers (Faust's table_standby_replicas)
    standby_replicas: int = Field(1, alias="MILESTONES_STANDBY_REPLICAS", ge=0, le=10)
    # the gen-0 threshold of Python's cyclic collector in the worker, which also freezes its startup heap
    # (streams/gc_tuning.py); 0: Python's own collector as it comes (gen-0 700, nothing frozen; the bench's before)
    gc_gen0: int = Field(50_000, alias="MILESTONES_GC_GEN0", ge=0, le=10_000_000)
    # a worker's stop, from SIGTERM (or a crash) to the process's exit, ends by this many seconds (signals.exit_within)
    stop_seconds: float = Field(20, alias="MILESTONES_STOP_SECONDS", gt=0, le=3600)
    # the producer waits this long to fill a batch: fewer, larger produce requests (measured in bench/)
    producer_linger: float = Field(0.005, alias="MILESTONES_PRODUCER_LINGER", ge=0, le=1)
    store: str = Field("memory://", alias="MILESTONES_STORE")
    # the largest record the worker writes (the producer's max.request.size; the broker's
    # message.max.bytes must be at least this): a row or record that would be larger is dead-lettered
    max_message_bytes: int = Field(1_000_000, alias="MILESTONES_MAX_MESSAGE_BYTES", ge=65_536, le=100_000_000)
    rules_file: Path | None = Field(None, alias="MILESTONES_RULES")
    adapters_file: Path | None = Field(None, alias="MILESTONES_ADAPTERS")  # Segment / Salesforce CDC ingestion
    data_dir: Path = Field(Path("var"), alias="MILESTONES_DATA_DIR")
    web_bind: str = Field("127.0.0.1", alias="MILESTONES_WEB_BIND")
    web_port: int = Field(6066, alias="MILESTONES_WEB_PORT", ge=0, le=65535)
    # /healthz: no progress with input waiting
    stall_seconds: float = Field(60.0, alias="MILESTONES_STALL_SECONDS", gt=0)
    anniversary_interval: float = Field(5.0, alias="MILESTONES_ANNIVERSARY_INTERVAL", gt=0)
    now: str | None = Field(None, alias="MILESTONES_NOW")  # start the injected clock at this instant
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", alias="MILESTONES_LOG_LEVEL")
    # the Confluent wire format (docs/schema-registry.md): a Confluent-compatible registry's URL, and the
    # framing this process writes (both framings are read on every topic)
    schema_registry_url: str | None = Field(None, alias="MILESTONES_SCHEMA_REGISTRY_URL",
                                            pattern=r"^https?://[^\s]+$")
    wire_format: Literal["single-object", "confluent"] = Field("single-object", alias="MILESTONES_WIRE_FORMAT")

    # drafting (the drafter agent in the worker)
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    model: str = Field(DEFAULT_MODEL, alias="MILESTONES_MODEL", min_length=1)
    model_timeout: float = Field(20.0, alias="MILESTONES_MODEL_TIMEOUT", gt=0)   # one request
    model_max_tokens: int = Field(800, alias="MILESTONES_MODEL_MAX_TOKENS", ge=100)
    model_retries: int = Field(2, alias="MILESTONES_MODEL_RETRIES", ge=0, le=10)
    # one draft, retries and retry-after waits included; beyond it the template drafts at once
    model_max_wait: float = Field(30.0, alias="MILESTONES_MODEL_MAX_WAIT", gt=0)
    gather_seconds: float = Field(10.0, alias="MILESTONES_GATHER_SECONDS", ge=0)
    drafter_interval: float = Field(1.0, alias="MILESTONES_DRAFTER_INTERVAL", gt=0)

    # approval UI, one-tap links and notifications
    secret: SecretStr | None = Field(None, alias="MILESTONES_SECRET")
    ui_url: str = Field("http://127.0.0.1:8080", alias="MILESTONES_UI_URL", pattern=r"^https?://[^\s]+$")
    ui_bind: str = Field("127.0.0.1", alias="MILESTONES_UI_BIND")
    ui_port: int = Field(8080, alias="MILESTONES_UI_PORT", ge=0, le=65535)
    ui_trusted_header: str | None = Field(None, alias="MILESTONES_UI_TRUSTED_HEADER")
    slack_webhook: str | None = Field(None, alias="MILESTONES_SLACK_WEBHOOK", pattern=r"^https?://[^\s]+$")
    # Slack approval buttons (docs/slack.md): the bot token (sender and UI), the app's signing secret (UI)
    slack_bot_token: SecretStr | None = Field(None, alias="MILESTONES_SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="MILESTONES_SLACK_SIGNING_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", alias="MILESTONES_SLACK_API_URL",
                               pattern=r"^https?://[^\s]+/$")
    # the CSM's daily digest (sender): the UTC hour it goes out (unset: no digest), how often it is checked
    digest_hour: int | None = Field(None, alias="MILESTONES_DIGEST_HOUR", ge=0, le=23)
    digest_interval: float = Field(60.0, alias="MILESTONES_DIGEST_INTERVAL", gt=0)

    # sending (SMTP)
    smtp_host: str = Field("127.0.0.1", alias="MILESTONES_SMTP_HOST")
    smtp_port: int = Field(1025, alias="MILESTONES_SMTP_PORT", ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = Field("none", alias="MILESTONES_SMTP_SECURITY")
    smtp_username: str | None = Field(None, alias="MILESTONES_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, alias="MILESTONES_SMTP_PASSWORD")
    smtp_timeout: float = Field(30.0, alias="MILESTONES_SMTP_TIMEOUT", gt=0)
    sender_address: str | None = Field(None, alias="MILESTONES_FROM")  # else From is the CSM
    message_id_domain: str = Field("milestone-stream.local", alias="MILESTONES_MESSAGE_ID_DOMAIN",
                                   pattern=r"^[A-Za-z0-9.-]+$")
    send_retry_seconds: float = Field(3600.0, alias="MILESTONES_SEND_RETRY_SECONDS", ge=0)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        known = {f.alias for f in cls.model_fields.values()}
        values = {k: v for k, v in env.items() if k in known and v != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = first["loc"][0] if first["loc"] else "?"
            raise ConfigError(f"{name}={values.get(str(name), '')!r}: {first['msg']}") from None

    def signing_key(self) -> bytes:
        """The HMAC key of links, sessions and CSRF tokens: from the environment only, never defaulted."""
        if self.secret is None or len(self.secret.get_secret_value()) < 32:
            raise ConfigError("MILESTONES_SECRET must be set to at least 32 random characters "
                              "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return self.secret.get_secret_value().encode()

    @property
    def broker_url(self) -> str:
        if not self.bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set (use `milestones up` for a local broker)")
        return "kafka://" + ";".join(self.bootstrap_servers.split(","))
