"""Config model of `kind: json` sources: requests, paging, JMESPath mappings, presets."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    model_validator,
)

from exporter.config_schema import (
    MAPPABLE_STATUSES,
    NonEmptyStr,
    NonNegativeDuration,
    OrgSettings,
    SourceCommon,
    _Strict,
)
from exporter.config_yaml import ErrorList
from exporter.sources.base import STEP_STATUSES
from exporter.sources.json_presets import PRESETS
from exporter.sources.settings import SourceConfig, build_org, effective, org_base, resolve_auth


def _check_expression(value: str) -> str:
    """Compile a JMESPath expression now so a typo is a config error, not a poll error."""
    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"invalid JMESPath expression {value!r}: {first}") from None
    return value


Expr = Annotated[str, Field(min_length=1), AfterValidator(_check_expression)]
Count = Annotated[int, Field(ge=1)]
ParamValue = str | int


def _map_validator(allowed: tuple[str, ...]) -> BeforeValidator:
    """Lowercase raw keys and require one of the normalized statuses as each value."""

    def check(value: object) -> object:
        if not isinstance(value, dict):
            return value
        out: dict[object, object] = {}
        for raw, status in value.items():
            if status not in allowed:
                raise ValueError(f"[{raw!r}]: expected one of {', '.join(allowed)}, got {status!r}")
            out[raw.strip().lower() if isinstance(raw, str) else raw] = status
        return out

    return BeforeValidator(check)


class PagingModel(_Strict):
    """How a list is paged; max_pages caps the requests of one list per poll."""

    style: Literal["none", "page", "offset", "link", "cursor"] = "none"
    page_param: NonEmptyStr = "page"
    first_page: Annotated[int, Field(ge=0)] = 1
    size_param: NonEmptyStr | None = None  # page: per_page; offset: limit
    page_size: Count = 100
    offset_param: NonEmptyStr = "offset"
    total: Expr | None = None  # body expression of the API's own item total
    cursor: Expr | None = None  # body expression of the next token (or next URL)
    cursor_param: NonEmptyStr | None = None  # None: `cursor` yields a URL to follow
    max_pages: Count = 10

    @model_validator(mode="after")
    def _cursor_needs_expression(self) -> PagingModel:
        """A cursor style without a cursor expression would never find the next page."""
        if self.style == "cursor" and self.cursor is None:
            raise ValueError("paging style cursor needs `cursor` (a JMESPath expression)")
        return self


class IncrementalModel(_Strict):
    """How a poll avoids re-reading everything: a changed-since filter or newest-first."""

    mode: Literal["none", "since", "newest_first"] = "none"
    since_param: NonEmptyStr | None = None
    until_param: NonEmptyStr | None = None
    overlap: NonNegativeDuration = 60.0

    @model_validator(mode="after")
    def _since_needs_param(self) -> IncrementalModel:
        """A changed-since mode needs the parameter that carries the watermark."""
        if self.mode == "since" and self.since_param is None:
            raise ValueError("mode since needs since_param (e.g. updated_at_gte)")
        return self


class RequestModel(_Strict):
    """One list endpoint: URL template, query, where its items are, how it pages."""

    path: NonEmptyStr
    params: dict[NonEmptyStr, ParamValue] = Field(default_factory=dict)
    items: Expr = "@"
    paging: PagingModel = PagingModel()
    etag: bool = False


class JobsModel(RequestModel):
    """The job list and how one item becomes a job."""

    incremental: IncrementalModel = IncrementalModel()
    detail_path: NonEmptyStr | None = None  # GET one job by {job_id}: active jobs not listed
    detail_changed: bool = False  # also GET every changed listed job (list items lack times)
    id: Expr
    type: Expr | None = None
    status: Expr
    created_at: Expr | None = None
    started_at: Expr | None = None
    finished_at: Expr | None = None
    progress: Expr | None = None
    duration: Expr | None = None


class StepStreamModel(RequestModel):
    """Every changed step of an org in one list (Airflow `~/~`), tied to jobs by `job_id`."""

    job_id: Expr  # the parent job's id of one item, the same text `jobs.id` gives
    incremental: IncrementalModel

    @model_validator(mode="after")
    def _changed_since_only(self) -> StepStreamModel:
        """A stream without a changed-since filter would re-read every step of the org."""
        if self.incremental.mode != "since":
            raise ValueError("a steps stream needs incremental mode since (e.g. updated_at_gte)")
        return self


class StepsModel(RequestModel):
    """The steps of one job ({job_id} in the path) and how one item becomes a step."""

    # with a stream, incremental polls read every changed step in one list instead of
    # `path` per job; `path` stays for full polls (after a start, each full_resync_interval)
    stream: StepStreamModel | None = None
    id: Expr
    type: Expr | None = None
    status: Expr
    attempt: Expr | None = None
    started_at: Expr | None = None
    finished_at: Expr | None = None


class DiscoverModel(RequestModel):
    """Orgs found under a parent (a GitHub org's repos, a GitLab group's projects)."""

    group: NonEmptyStr  # {group} / {group_encoded} in `path`
    address: Expr  # the org address of one item ({org} of the job paths)


class JsonAuthModel(_Strict):
    """Bearer/named-header token, basic user + password, or Airflow 3's JWT login."""

    token: SecretStr | None = None
    token_file: NonEmptyStr | None = None
    header: NonEmptyStr = "Authorization"
    scheme: str = "Bearer"  # prefix of the token in `header`; "" for PRIVATE-TOKEN
    username: NonEmptyStr | None = None
    password: SecretStr | None = None
    password_file: NonEmptyStr | None = None
    login: Literal["basic", "airflow-jwt"] = "basic"
    login_path: NonEmptyStr = "/auth/token"

    @model_validator(mode="after")
    def _one_method(self) -> JsonAuthModel:
        """Refuse ambiguous credentials instead of silently preferring one."""
        has_token = self.token is not None or self.token_file is not None
        has_password = self.password is not None or self.password_file is not None
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are mutually exclusive")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are mutually exclusive")
        if has_token and (self.username is not None or has_password):
            raise ValueError("use either a token or username with a password, not both")
        if (self.username is None) != (not has_password):
            raise ValueError("username and password (or password_file) go together")
        return self


class JsonOrgModel(OrgSettings):
    """One org of a json source: its address is whatever {org} means for the API."""

    address: NonEmptyStr
    name: NonEmptyStr | None = None
    job_types: Annotated[list[NonEmptyStr], Field(min_length=1)] | None = None


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings: the user's keys win, nested mappings merge key by key."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


class JsonSourceModel(SourceCommon):
    """A `kind: json` source; a preset fills in every key the user does not set."""

    kind: Literal["json"]
    preset: Literal["github-actions", "gitlab-ci", "airflow"] | None = None
    api: Literal["v1", "v2"] = "v1"  # {api} in paths: Airflow 2.x (v1) or 3.x (v2)
    auth: JsonAuthModel = JsonAuthModel()
    headers: dict[NonEmptyStr, str] = Field(default_factory=dict)
    organizations: Annotated[list[JsonOrgModel], Field(min_length=1)] | None = None
    discover: DiscoverModel | None = None
    jobs: JobsModel
    steps: StepsModel | None = None
    status_map: Annotated[dict[NonEmptyStr, str], _map_validator(MAPPABLE_STATUSES)] = Field(
        default_factory=dict)
    step_status_map: Annotated[dict[NonEmptyStr, str], _map_validator(STEP_STATUSES)] = Field(
        default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Lay the preset's keys under the user's; an unknown preset fails on `preset`."""
        if not isinstance(data, dict):
            return data
        preset = PRESETS.get(str(data.get("preset")))
        if preset is None:
            return data
        if "discover" not in data:  # the preset's discovery applies only once a group is named
            preset = {k: v for k, v in preset.items() if k != "discover"}
        return _merge(preset, data)

    @model_validator(mode="after")
    def _orgs_or_discovery(self) -> JsonSourceModel:
        """Require exactly one of a static org list and a discovery endpoint."""
        if (self.organizations is None) == (self.discover is None):
            raise ValueError("give either organizations (a list) or discover (with a group)")
        return self


JSON_MODELS: tuple[type[BaseModel], ...] = (
    DiscoverModel, JsonSourceModel, JobsModel, StepsModel, StepStreamModel, PagingModel,
    IncrementalModel, JsonAuthModel, JsonOrgModel,
)


@dataclass(frozen=True, slots=True)
class JsonSettings:
    """The json kind's own settings: the model with its preset applied, and the login."""

    spec: JsonSourceModel = field(repr=False)  # requests, paging, mappings
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def configure(loc: str, src: JsonSourceModel, defaults: Mapping[str, Any],
              base: pathlib.Path | None, errs: ErrorList) -> SourceConfig:
    """Check a kind json source and merge defaults -> source -> org."""
    token, password = resolve_auth(loc, src, base, errs)
    eff = effective(src, defaults)
    orgs = tuple(build_org(org, org_base(eff)) for org in src.organizations or ())
    seen: dict[str, int] = {}
    for j, org in enumerate(orgs):
        if org.label in seen:
            errs.add(f"{loc}.organizations[{j}]", f"duplicate org {org.label!r} "
                     f"(also organizations[{seen[org.label]}])")
        seen.setdefault(org.label, j)
    return SourceConfig(
        name=src.name, kind=src.kind, base_url=src.base_url, token=token,
        kind_settings=JsonSettings(src, src.auth.username, password),
        organizations_auto=src.discover is not None, orgs=orgs,
        status_map=tuple(sorted(src.status_map.items())), address_of=str, **eff,
    )


def auth_text(src: SourceConfig) -> str:
    """Name the auth method for `check-config`, without the secret."""
    username = src.kind_as(JsonSettings).username
    return "token" if src.token is not None else "none" if username is None else "password"


def head_text(src: SourceConfig) -> str:
    """Show the preset in the check-config summary."""
    preset = src.kind_as(JsonSettings).spec.preset
    return f", preset {preset}" if preset else ""
