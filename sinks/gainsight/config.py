"""The Gainsight stage's settings, from the environment (`MILESTONES_GAINSIGHT_*`; URL unset = stage off).

Why beside the stage rather than in streams/settings.py: only `milestones gainsight` reads them, and a
bad value stops that command alone, with one line, like every other setting.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from milestone_stream.settings import ConfigError


class GainsightSettings(BaseModel):
    url: str | None = Field(None, alias="MILESTONES_GAINSIGHT_URL")  # e.g. https://acme.gainsightcloud.com
    access_key: SecretStr | None = Field(None, alias="MILESTONES_GAINSIGHT_ACCESS_KEY")
    activity_type: str = Field("Email", alias="MILESTONES_GAINSIGHT_ACTIVITY_TYPE", min_length=1, max_length=80)
    company_field: str = Field("Name", alias="MILESTONES_GAINSIGHT_COMPANY_FIELD", min_length=1, max_length=80,
                               pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    calls_per_minute: float = Field(200, alias="MILESTONES_GAINSIGHT_RATE", gt=0, le=200)
    retry_seconds: float = Field(3600, alias="MILESTONES_GAINSIGHT_RETRY_SECONDS", ge=0)
    timeout: float = Field(30, alias="MILESTONES_GAINSIGHT_TIMEOUT", gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
            raise ValueError("must be an http(s) URL such as https://acme.gainsightcloud.com")
        return url

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GainsightSettings:
        env = dict(os.environ if env is None else env)
        known = {f.alias for f in cls.model_fields.values()}
        values = {k: v for k, v in env.items() if k in known and v != ""}
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            shown = "(hidden)" if name == "MILESTONES_GAINSIGHT_ACCESS_KEY" else repr(values.get(name, ""))
            raise ConfigError(f"{name}={shown}: {first['msg']}") from None
        if settings.enabled and settings.access_key is None:
            raise ConfigError("MILESTONES_GAINSIGHT_ACCESS_KEY must be set with MILESTONES_GAINSIGHT_URL "
                              "(a Gainsight REST API access key)")
        return settings
