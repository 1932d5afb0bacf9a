"""Settings: built once in the entry point from the environment and `.env`, then passed down.

Every key is documented in config.example.env; tests/test_docs.py fails when one is not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The 18 kecamatan of Kabupaten Magetan, the first regency using SuaraWarga.
MAGETAN_KECAMATAN = (
    "Barat",
    "Bendo",
    "Karangrejo",
    "Karas",
    "Kartoharjo",
    "Kawedanan",
    "Lembeyan",
    "Magetan",
    "Maospati",
    "Ngariboyo",
    "Nguntoronadi",
    "Panekan",
    "Parang",
    "Plaosan",
    "Poncol",
    "Sidorejo",
    "Sukomoro",
    "Takeran",
)

_TELEGRAM_TOKEN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{30,}$")
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_OFFICIAL = re.compile(r"^(telegram|whatsapp|terminal):[A-Za-z0-9_.+-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

CommaList = Annotated[list[str], NoDecode]


def _catalogue_languages() -> list[str]:
    """The languages handlers/locales has a catalogue for (adding one is adding a file)."""
    from importlib import resources

    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files("handlers.locales").iterdir()
        if entry.name.endswith(".toml")
    )


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _every(values: list[str], pattern: str, problem: str) -> list[str]:
    """`values` when each one matches `pattern` in full; otherwise the problem, naming them."""
    bad = [item for item in values if not re.fullmatch(pattern, item)]
    if bad:
        raise ValueError(f"{problem}: {bad}")
    return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    regency_name: str = "Kabupaten Magetan"
    areas: CommaList = Field(default_factory=lambda: list(MAGETAN_KECAMATAN))
    default_language: str = "id"
    timezone: str = "Asia/Jakarta"
    database_path: Path = Path("data/suarawarga.db")
    # PostgreSQL (postgresql://user@host:5432/db) instead of the SQLite file; None: the file.
    database_url: str | None = None
    rules_path: Path | None = None
    privacy_notice_version: str = "2026-11"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    telegram_bot_token: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None

    whatsapp_access_token: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    whatsapp_api_base_url: str = "https://graph.facebook.com/v23.0"
    whatsapp_template_status: str | None = None
    whatsapp_template_reply: str | None = None
    whatsapp_template_digest: str | None = None
    # Issue 18: a consultation outside the 24-hour window ({{1}} its number, {{2}} the
    # question); without it such residents are not asked, and counted as not sent.
    whatsapp_template_consultation: str | None = None
    whatsapp_template_language: str = "id"
    # Meta's throughput per business number: 80 at the lowest tier, up to 1,000 above it.
    whatsapp_messages_per_second: float = Field(80.0, gt=0, le=1000)

    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    # Deadlines for a client to send its request headers and its whole body (slowloris).
    http_header_timeout: float = Field(10.0, gt=0, le=300)
    http_body_timeout: float = Field(10.0, gt=0, le=300)

    officials: CommaList = Field(default_factory=list)
    max_submissions_per_day: int = Field(10, ge=1)
    flood_max_messages: int = Field(15, ge=2)
    flood_window_seconds: float = Field(15.0, gt=0)

    digest_schedule: str = "0 7 * * mon"
    digest_telegram_chat_ids: CommaList = Field(default_factory=list)
    digest_emails: CommaList = Field(default_factory=list)
    digest_whatsapp_numbers: CommaList = Field(default_factory=list)
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_from: str = "suarawarga@localhost"

    # Issue 17: deadlines in working days, reminders, escalation, closure.
    deadline_first_response_days: int = Field(3, ge=1, le=60)
    deadline_agency_answer_days: int = Field(5, ge=1, le=60)
    deadline_resolution_days: int = Field(10, ge=1, le=250)
    holidays_extra: CommaList = Field(default_factory=list)
    reminder_time: str = "08:00"
    escalation_chats: CommaList = Field(default_factory=list)
    closure_confirm_days: int = Field(7, ge=1, le=90)

    # The web desk, the public page and Open311 (bot/webdesk, issue 19).
    public_url: str | None = None
    desk_secret: str | None = None
    desk_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    map_tile_url: str | None = None
    map_tile_attribution: str = ""
    open311_api_keys: CommaList = Field(default_factory=list)

    _split_deadline_lists = field_validator("holidays_extra", "escalation_chats", mode="before")(_split)

    _split_lists = field_validator(
        "areas",
        "officials",
        "digest_telegram_chat_ids",
        "digest_emails",
        "digest_whatsapp_numbers",
        "open311_api_keys",
        mode="before",
    )(_split)

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, v: str | None) -> str | None:
        if v and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", v):
            raise ValueError("must be the address residents' officials open, e.g. https://suarawarga.magetan.go.id")
        return v.rstrip("/") if v else None

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, v: str | None) -> str | None:
        if v and not re.fullmatch(r"postgres(ql)?://\S+", v):
            raise ValueError("must be a PostgreSQL URL, e.g. postgresql://suarawarga@127.0.0.1:5432/suarawarga")
        return v or None

    @field_validator("desk_secret")
    @classmethod
    def _desk_secret_shape(cls, v: str | None) -> str | None:
        if v and len(v) < 32:
            raise ValueError(
                "must be at least 32 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return v or None

    @field_validator("open311_api_keys")
    @classmethod
    def _api_keys_shape(cls, v: list[str]) -> list[str]:
        if any(len(key) < 16 for key in v):
            raise ValueError("every key must be at least 16 characters")
        return v

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, v: str | None) -> str | None:
        if v and not _TELEGRAM_TOKEN.match(v):
            # Never echo the value: it may be a real token with a typo.
            raise ValueError("is not a Bot API token (digits, a colon, then at least 30 characters)")
        return v or None

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, v: str | None) -> str | None:
        if v and not _WEBHOOK_SECRET.match(v):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return v or None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder of zones: IsADirectoryError
            raise ValueError(f"unknown timezone {v!r}") from None
        return v

    @field_validator("officials")
    @classmethod
    def _officials_shape(cls, v: list[str]) -> list[str]:
        bad = [item for item in v if not _OFFICIAL.match(item)]
        if bad:
            raise ValueError(
                "entries must look like telegram:123456789, whatsapp:628123... or terminal:NAME "
                f"(the --user of `suarawarga chat`): {bad}"
            )
        return v

    @field_validator("escalation_chats")
    @classmethod
    def _escalation_shape(cls, v: list[str]) -> list[str]:
        return _every(
            v,
            r"(telegram|whatsapp|terminal):-?[A-Za-z0-9_.+-]{1,64}",
            "entries must look like telegram:-1001234567890 or whatsapp:628123...",
        )

    @field_validator("holidays_extra")
    @classmethod
    def _holiday_dates(cls, v: list[str]) -> list[str]:
        from handlers.deadlines import parse_extra

        parse_extra(v)  # raises ValueError naming the bad entry
        return v

    @field_validator("reminder_time")
    @classmethod
    def _time_shape(cls, v: str) -> str:
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", v.strip())
        if not m:
            raise ValueError("must be HH:MM, e.g. 08:00")
        return f"{int(m[1]):02d}:{m[2]}"

    @field_validator("default_language")
    @classmethod
    def _catalogue_exists(cls, v: str) -> str:
        languages = _catalogue_languages()
        if v not in languages:
            raise ValueError(f"no message catalogue for {v!r}; available: {', '.join(languages)}")
        return v

    @field_validator("digest_emails")
    @classmethod
    def _emails_shape(cls, v: list[str]) -> list[str]:
        bad = [item for item in v if not _EMAIL.match(item)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return v

    @field_validator("digest_telegram_chat_ids")
    @classmethod
    def _chat_ids_shape(cls, v: list[str]) -> list[str]:
        return _every(v, r"-?\d{1,20}", "Telegram chat ids are integers")

    @field_validator("digest_whatsapp_numbers")
    @classmethod
    def _wa_numbers_shape(cls, v: list[str]) -> list[str]:
        return _every(v, r"\d{6,20}", "WhatsApp numbers are digits with country code, no '+'")

    @field_validator("areas")
    @classmethod
    def _areas_present(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one area")
        if len(set(a.casefold() for a in v)) != len(v):
            raise ValueError("lists an area twice")
        return v

    @field_validator("digest_schedule")
    @classmethod
    def _cron_shape(cls, v: str) -> str:
        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression (minute hour day month weekday): {exc}") from None
        return v

    @model_validator(mode="after")
    def _channel_completeness(self) -> Settings:
        wa = {
            "whatsapp_access_token": self.whatsapp_access_token,
            "whatsapp_phone_number_id": self.whatsapp_phone_number_id,
            "whatsapp_app_secret": self.whatsapp_app_secret,
            "whatsapp_verify_token": self.whatsapp_verify_token,
        }
        if any(wa.values()) and not all(wa.values()):
            missing = ", ".join(k.upper() for k, v in wa.items() if not v)
            raise ValueError(f"WhatsApp is half configured: also set {missing}")
        if self.telegram_mode == "webhook":
            if not self.telegram_bot_token:
                raise ValueError("TELEGRAM_MODE=webhook needs TELEGRAM_BOT_TOKEN")
            if not (self.telegram_webhook_url and self.telegram_webhook_secret):
                raise ValueError("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_URL and TELEGRAM_WEBHOOK_SECRET")
        if self.desk_secret and not self.public_url:
            raise ValueError("DESK_SECRET needs PUBLIC_URL (the sign-in links point there)")
        return self

    # Derived values -------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def whatsapp_enabled(self) -> bool:
        return bool(self.whatsapp_access_token)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    @property
    def desk_enabled(self) -> bool:
        """The web desk, the public page and Open311 are served (bot/webdesk)."""
        return bool(self.desk_secret)

    @property
    def needs_web_server(self) -> bool:
        return self.whatsapp_enabled or (self.telegram_enabled and self.telegram_mode == "webhook") or self.desk_enabled

    def secrets(self) -> list[str]:
        """Values that must never reach a log line."""
        values = [
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.whatsapp_access_token,
            self.whatsapp_app_secret,
            self.whatsapp_verify_token,
            self.smtp_password,
            self.desk_secret,
            *self.open311_api_keys,
        ]
        return [v for v in values if v]


class ConfigError(Exception):
    """Invalid configuration: one human-readable line per bad key."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = "_".join(str(part) for part in err["loc"]).upper() or "CONFIG"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}")
        raise ConfigError(problems) from None
