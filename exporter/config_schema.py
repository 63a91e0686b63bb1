"""The config file's pydantic models and value parsers (durations, sizes, addresses); no merging."""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    model_validator,
)

from exporter.state.snapshot import DURATION_BUCKETS

SOURCE_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
_ADDRESS_RE = re.compile(r"^(?:0[xX])?([0-9a-fA-F]{40})$")
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Built-in values of every overridable setting (durations in seconds).
BUILTIN_DEFAULTS: dict[str, Any] = {
    "interval": 30.0,
    "timeout": 10.0,
    "concurrency": 8,
    "max_requests_per_second": 5.0,
    "full_resync_interval": 3600.0,
    "failed_job_retention": 3600.0,
    "jitter": 0.1,
    "retries": 3,
    "max_job_types_per_org": 50,
    "max_step_types_per_org": 100,
    "max_job_series_per_org": 500,
    "max_response_bytes": 64 * 1024 * 1024,
    "max_retry_after": 600.0,
    "resync_budget": 0.1,  # share of max_requests_per_second a trickled resync may use
    "duration_buckets": DURATION_BUCKETS,
    "step_duration_buckets": DURATION_BUCKETS,
}
# Settings that make sense per organization; the rest are per HTTP client (source).
ORG_SETTING_KEYS: frozenset[str] = frozenset(
    {
        "interval", "timeout", "full_resync_interval", "failed_job_retention", "jitter",
        "max_job_types_per_org", "max_step_types_per_org", "max_job_series_per_org",
        "duration_buckets", "step_duration_buckets",
    }
)
SOURCE_SETTING_KEYS: frozenset[str] = frozenset(BUILTIN_DEFAULTS)
# Normalized job statuses a status_map may name (base.JOB_STATUSES).
MAPPABLE_STATUSES: tuple[str, ...] = (
    "pending", "running", "completed", "failed", "partial", "cancelled", "unknown",
)
# Keys whose values must never appear in an error message.
SECRET_KEYS: frozenset[str] = frozenset({"token", "password"})


def parse_duration(value: object) -> float:
    """Turn '500ms', '15s', '1h30m' or a plain number of seconds into float seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 500ms, 15s, 5m, 1h30m, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        if _DURATION_RE.fullmatch(text):
            parts = _DURATION_PART_RE.findall(text)
            return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in parts)
    raise ValueError(f"expected a duration like 500ms, 15s, 5m, 1h30m, got {value!r}")


def format_duration(seconds: float) -> str:
    """Render seconds the way the config file spells them, for summaries and logs."""
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
    rest = int(seconds)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(value: object) -> int:
    """Turn 64MiB, 500KB or a plain number of bytes into bytes (at least 1 KiB)."""
    match = None
    if isinstance(value, int | str) and not isinstance(value, bool):
        match = _SIZE_RE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"expected a size like 64MiB, 500KB or a number of bytes, got {value!r}")
    size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 1024:
        raise ValueError(f"expected a size of at least 1KiB, got {value!r}")
    return size


def _status_map(value: object) -> object:
    """Map raw API statuses (any case) to normalized ones; keys are compared lowercased."""
    if not isinstance(value, dict):
        return value
    out: dict[object, object] = {}
    for raw, status in value.items():
        key = raw.strip().lower() if isinstance(raw, str) else raw
        if status not in MAPPABLE_STATUSES:
            raise ValueError(f"status_map[{raw!r}]: expected one of "
                             f"{', '.join(MAPPABLE_STATUSES)}, got {status!r}")
        out[key] = status
    return out


def _positive_duration(value: object) -> float:
    """Reject zero and negative durations where a zero would mean a busy loop."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0, got {value!r}")
    return seconds


def _non_negative_duration(value: object) -> float:
    """Allow zero where it means 'keep nothing'."""
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"expected a duration >= 0, got {value!r}")
    return seconds


def normalize_address(value: str) -> str:
    """Accept the forms the Vocdoni API accepts and return the lowercase 0x form."""
    match = _ADDRESS_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected 0x followed by 40 hex digits, got {value!r}")
    return "0x" + match.group(1).lower()


def _check_base_url(value: str) -> str:
    """Require an absolute http(s) URL without credentials; drop the trailing slash."""
    parts = urlsplit(value.strip())
    shown = "" if "@" in value else f", got {value!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host{shown}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in base_url are not allowed; use auth")
    if parts.query or parts.fragment:
        raise ValueError(f"expected a URL without query or fragment{shown}")
    return value.strip().rstrip("/")


def _check_source_name(value: str) -> str:
    """Keep source names usable as label values and in log lines."""
    if not SOURCE_NAME_RE.fullmatch(value):
        raise ValueError(f"expected a name matching {SOURCE_NAME_RE.pattern}, got {value!r}")
    return value


def _check_email(value: str) -> str:
    """Catch an obviously wrong login email before the first poll does."""
    if "@" not in value or value.strip() != value:
        raise ValueError("expected an email address")
    return value


def _reject_bool(value: object) -> object:
    """Stop YAML's `true` from passing as the number 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


_NOT_BOOL = BeforeValidator(_reject_bool)
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
NonNegativeDuration = Annotated[float, BeforeValidator(_non_negative_duration)]


def _check_buckets(value: tuple[float, ...]) -> tuple[float, ...]:
    """Require finite, strictly ascending upper bounds (+Inf is always added)."""
    if not all(math.isfinite(b) for b in value):
        raise ValueError("expected finite bucket bounds (+Inf is added by the exporter)")
    if any(b >= c for b, c in itertools.pairwise(value)):
        raise ValueError(f"expected strictly ascending bucket bounds, got {list(value)}")
    return value


# Histogram upper bounds in seconds (numbers or durations such as "5m"), ascending, positive.
Buckets = Annotated[
    tuple[PositiveDuration, ...], Field(min_length=1, max_length=60), AfterValidator(_check_buckets)
]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Address = Annotated[str, AfterValidator(normalize_address)]


class _Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OrgSettings(_Strict):
    """Settings an organization may override (None = inherit)."""

    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    full_resync_interval: PositiveDuration | None = None
    failed_job_retention: NonNegativeDuration | None = None
    jitter: Annotated[float, _NOT_BOOL, Field(ge=0, lt=1)] | None = None
    max_job_types_per_org: Annotated[int, _NOT_BOOL, Field(ge=1)] | None = None
    max_step_types_per_org: Annotated[int, _NOT_BOOL, Field(ge=1)] | None = None
    max_job_series_per_org: Annotated[int, _NOT_BOOL, Field(ge=0)] | None = None
    duration_buckets: Buckets | None = None
    step_duration_buckets: Buckets | None = None


class SourceSettings(OrgSettings):
    """Settings a source (and `defaults`) may set: org ones plus the HTTP client policy."""

    concurrency: Annotated[int, _NOT_BOOL, Field(ge=1)] | None = None
    max_requests_per_second: Annotated[float, _NOT_BOOL, Field(gt=0)] | None = None
    retries: Annotated[int, _NOT_BOOL, Field(ge=0)] | None = None
    max_response_bytes: Annotated[int, BeforeValidator(parse_size)] | None = None
    max_retry_after: NonNegativeDuration | None = None
    resync_budget: Annotated[float, _NOT_BOOL, Field(gt=0, le=1)] | None = None


class OrgModel(OrgSettings):
    """One Vocdoni organization to poll."""

    address: Address
    name: NonEmptyStr | None = None
    job_types: Annotated[list[NonEmptyStr], Field(min_length=1)] | None = None


class AuthModel(_Strict):
    """Credentials of one source; exactly one method."""

    token: SecretStr | None = None
    token_file: NonEmptyStr | None = None
    email: Annotated[str, AfterValidator(_check_email)] | None = None
    password: SecretStr | None = None
    password_file: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _one_method(self) -> AuthModel:
        """Refuse ambiguous credentials instead of silently preferring one."""
        given = {k for k in ("token", "token_file", "email", "password", "password_file")
                 if getattr(self, k) is not None}
        if {"token", "token_file"} <= given:
            raise ValueError("token and token_file are mutually exclusive")
        if {"password", "password_file"} <= given:
            raise ValueError("password and password_file are mutually exclusive")
        has_token = bool(given & {"token", "token_file"})
        has_password = bool(given & {"password", "password_file"})
        if has_token and given & {"email", "password", "password_file"}:
            raise ValueError("use either a token or email with a password, not both")
        if "email" in given and not has_password:
            raise ValueError("email needs password or password_file")
        if has_password and "email" not in given:
            raise ValueError("password needs email")
        if not given:
            raise ValueError("expected one of: token, token_file, or email with "
                             "password or password_file")
        return self


def _organizations_tag(value: object) -> str:
    """Pick the branch so errors come from one branch only."""
    return "list" if isinstance(value, list) else "auto"


Organizations = Annotated[
    Annotated[Literal["auto"], Tag("auto")] | Annotated[list[OrgModel], Tag("list")],
    Discriminator(_organizations_tag),
]


def _known_kind(value: object) -> object:
    """Accept only the kinds a module under exporter/sources/ registers."""
    from exporter.sources.registry import KINDS  # the registry imports this module

    if value not in KINDS:
        listed = [repr(k) for k in KINDS]
        names = ", ".join(listed[:-1]) + " or " + listed[-1] if len(listed) > 1 else listed[0]
        raise ValueError(f"expected {names}, got {value!r}")
    return value


class SourceCommon(SourceSettings):
    """The keys every source kind has: name, kind, base_url, plus the settings of `defaults`."""

    name: Annotated[str, AfterValidator(_check_source_name)]
    kind: Annotated[str, BeforeValidator(_known_kind)]
    base_url: Annotated[str, AfterValidator(_check_base_url)]


class SourceModel(SourceCommon):
    """The base of the kinds that log in with AuthModel and map statuses (vocdoni, ordo)."""

    auth: AuthModel
    status_map: Annotated[dict[NonEmptyStr, str], BeforeValidator(_status_map)] | None = None


class StateModel(_Strict):
    """Where the exporter keeps what must survive restarts."""

    path: NonEmptyStr = "./asyncjob-state.db"


class ConfigModel(_Strict):
    """The whole config file."""

    state: StateModel = StateModel()
    defaults: SourceSettings = SourceSettings()
    sources: Annotated[list[SourceCommon], Field(min_length=1)]  # one model per kind: registry
