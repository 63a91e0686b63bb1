"""Tests of exporter.config: loading, merging, interpolation, secrets and error reporting."""

from __future__ import annotations

import pathlib

import pytest

from exporter.config import ALL_KEYS, Config, ConfigError, check_config, load_config
from exporter.config_schema import format_duration, parse_duration
from exporter.sources.json_config import JsonSettings
from exporter.sources.ordo_config import OrdoSettings
from exporter.sources.vocdoni_config import VocdoniSettings
from tests.fakes import WriteConfig

REPO = pathlib.Path(__file__).resolve().parent.parent
ADDR1 = "0x" + "1" * 40
ADDR2 = "0x" + "ab" * 20
SECRET = "s3cr3t-VALUE-never-print"

def _load(path: pathlib.Path, **env: str) -> Config:
    return load_config(path, env=env)


ORDO = """
sources:
  - name: ordo-lidar
    kind: ordo
    base_url: https://ordo.example.org/ordo/
    auth: {token: "${ORDO_TOKEN}"}
    organization: lidar
"""


def test_minimal_ordo_gets_builtin_defaults(write_config: WriteConfig) -> None:
    cfg = _load(write_config(ORDO), ORDO_TOKEN=SECRET)
    assert cfg.state_path == "./asyncjob-state.db"
    (src,) = cfg.sources
    assert (src.name, src.kind) == ("ordo-lidar", "ordo")
    assert src.base_url == "https://ordo.example.org/ordo"
    assert src.token == SECRET and not src.organizations_auto
    assert src.kind_as(OrdoSettings) == OrdoSettings()  # no login: a token only
    assert (src.interval, src.timeout, src.concurrency, src.max_requests_per_second) == (
        30, 10, 8, 5)
    assert (src.full_resync_interval, src.failed_job_retention, src.jitter, src.retries) == (
        3600, 3600, 0.1, 3)
    assert (src.max_job_types_per_org, src.max_step_types_per_org,
            src.max_job_series_per_org) == (50, 100, 500)
    (org,) = src.orgs
    assert (org.address, org.label, org.job_types, org.interval) == ("lidar", "lidar", (), 30)
    assert src.client_settings().base_url == "https://ordo.example.org/ordo"


def test_ordo_id_window(write_config: WriteConfig) -> None:
    src = _load(write_config(ORDO), ORDO_TOKEN=SECRET).sources[0]
    assert src.kind_as(OrdoSettings).id_window == 25
    cfg = _load(write_config(ORDO + "    id_window: 60\n"), ORDO_TOKEN=SECRET)
    assert cfg.sources[0].kind_as(OrdoSettings).id_window == 60
    with pytest.raises(ConfigError, match="id_window"):
        _load(write_config(ORDO + "    id_window: 0\n"), ORDO_TOKEN=SECRET)


def test_defaults_merge_at_three_levels(write_config: WriteConfig, tmp_path: pathlib.Path) -> None:
    (tmp_path / "tok").write_text("tok-from-file\n")
    path = write_config(f"""
        state: {{path: ":memory:"}}
        defaults:
          interval: 1m
          timeout: 20s
          concurrency: 2
          max_requests_per_second: 0.5
          jitter: 0.2
          max_job_series_per_org: 10
        sources:
          - name: voc
            kind: vocdoni
            base_url: http://127.0.0.1:8080
            api: v1
            auth: {{token_file: tok}}
            interval: 15s
            concurrency: 4
            organizations:
              - address: {ADDR1}
                name: acme
                interval: 1h30m
                max_job_series_per_org: 3
                job_types: [org_members, publish_process, org_members]
              - address: "{ADDR2.upper().replace('0X', '')}"
    """)
    cfg = _load(path)
    (src,) = cfg.sources
    assert cfg.state_path == ":memory:"
    assert src.kind_as(VocdoniSettings).api == "v1" and src.token == "tok-from-file"
    assert (src.interval, src.timeout, src.concurrency, src.max_requests_per_second) == (
        15, 20, 4, 0.5)
    acme, other = src.orgs
    assert (acme.address, acme.label) == (ADDR1, "acme")
    assert acme.job_types == ("org_members", "publish_process")
    assert (acme.interval, acme.timeout, acme.jitter, acme.max_job_series_per_org) == (
        5400, 20, 0.2, 3)
    assert (other.address, other.label, other.job_types) == (ADDR2, ADDR2, ())
    assert (other.interval, other.max_job_series_per_org) == (15, 10)
    assert src.discovered_org(ADDR1.upper()[2:]).interval == 15


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2", 2),
     ("1.5", 1.5), ("1m30s", 90), ("1d", 86400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_plain_number_duration_and_format(write_config: WriteConfig) -> None:
    path = write_config(ORDO + "    interval: 45\n    timeout: 2.5\n")
    src = _load(path, ORDO_TOKEN="t").sources[0]
    assert (src.interval, src.timeout) == (45.0, 2.5)
    assert [format_duration(s) for s in (0.5, 15, 5400, 2.5)] == ["500ms", "15s", "1h30m", "2.5s"]


def test_env_interpolation_everywhere(write_config: WriteConfig) -> None:
    path = write_config("""
        # commented-out ${NOT_SET_ANYWHERE} is ignored
        defaults: {concurrency: "${CONC}", interval: "${IVAL}"}
        sources:
          - name: ${NAME}-prod
            kind: ordo
            base_url: https://${HOST}/ordo
            auth: {token: "${TOK}"}
            organization: lit$$eral
    """)
    src = _load(path, CONC="3", IVAL="2m", NAME="ordo", HOST="h.example", TOK=SECRET).sources[0]
    assert (src.name, src.base_url, src.concurrency, src.interval) == (
        "ordo-prod", "https://h.example/ordo", 3, 120)
    assert src.token == SECRET and src.orgs[0].label == "lit$eral"


def test_env_defaults_to_os_environ(write_config: WriteConfig,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDO_TOKEN", "from-os")
    assert load_config(str(write_config(ORDO))).sources[0].token == "from-os"


def test_auto_orgs_with_email_and_password_file(write_config: WriteConfig,
                                                tmp_path: pathlib.Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\r\n")
    path = write_config("""
        sources:
          - name: voc_auto
            kind: vocdoni
            base_url: https://saas.example.org
            auth: {email: ops@example.org, password_file: pw}
            organizations: auto
    """)
    src = _load(path).sources[0]
    assert src.organizations_auto and src.orgs == ()
    own = src.kind_as(VocdoniSettings)
    assert (own.email, own.password, src.token) == ("ops@example.org", SECRET, None)
    assert own.api == "auto"


def test_equal_orgs_compare_equal_across_loads(write_config: WriteConfig) -> None:
    path = write_config(ORDO)
    a, b = _load(path, ORDO_TOKEN="t"), _load(path, ORDO_TOKEN="t")
    assert a == b and a.sources[0].orgs[0] == b.sources[0].orgs[0]
    changed = _load(write_config(ORDO + "    interval: 31s\n"), ORDO_TOKEN="t")
    assert changed.sources[0].orgs[0] != a.sources[0].orgs[0]
    assert _load(path, ORDO_TOKEN="u").sources[0] != a.sources[0]


def test_secrets_never_shown(write_config: WriteConfig, tmp_path: pathlib.Path) -> None:
    (tmp_path / "pw").write_text(SECRET)
    path = write_config(ORDO + f"""
  - name: voc
    kind: vocdoni
    base_url: https://saas.example.org
    auth: {{email: ops@example.org, password_file: {tmp_path / "pw"}}}
    organizations: auto
""")
    cfg = _load(path, ORDO_TOKEN=SECRET)
    assert cfg.sources[0].token == SECRET
    assert cfg.sources[1].kind_as(VocdoniSettings).password == SECRET
    # what logs and errors print of a config: reprs and the check-config summary
    assert SECRET not in repr(cfg)
    assert all(SECRET not in repr(s) and SECRET not in str(s) for s in cfg.sources)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ORDO_TOKEN", SECRET)
        code, text = check_config(str(path))
    assert code == 0 and "voc" in text and SECRET not in text


def test_check_config_success_summary_has_no_secret(write_config: WriteConfig,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDO_TOKEN", SECRET)
    path = write_config(ORDO)
    code, text = check_config(str(path))
    assert code == 0
    assert "ordo-lidar" in text and "lidar" in text and "interval 30s" in text
    assert SECRET not in text


def test_check_config_failure(write_config: WriteConfig) -> None:
    path = write_config("sources: []\n")
    code, text = check_config(str(path))
    assert code == 1
    assert text.startswith(f"{path}: sources: expected at least one entry")


def test_missing_config_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert info.value.path == str(missing)
    assert str(info.value) == f"{missing}: cannot read config file: No such file or directory"


@pytest.mark.parametrize(
    ("text", "line_col", "fragment"),
    [
        ("sources:\n  - name: a\n    kind: ordo: x\n", "3:15", "mapping values are not allowed"),
        ("sources:\n  - [a\n", "3:1", "expected ',' or ']'"),
        ("", None, "file is empty"),
        ("- a\n- b\n", None, "expected a mapping with 'sources'"),
        ("state:\n\tpath: x\n", "2:1",
         "a tab character: YAML indents with spaces only, replace the tab with spaces"),
        ("state:\n  path: x\nsources:\n\t- name: a\n", "4:1", "a tab character: YAML indents"),
    ],
)
def test_yaml_syntax_errors(write_config: WriteConfig, text: str, line_col: str | None,
                            fragment: str) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    prefix = f"{path}:{line_col}: " if line_col else f"{path}: "
    assert str(info.value).startswith(prefix)
    assert fragment in str(info.value)


VOC = f"""
sources:
  - name: voc
    kind: vocdoni
    base_url: https://saas.example.org
    auth: {{token: "{SECRET}"}}
    organizations:
      - address: "{ADDR1}"
"""


def _voc(extra_source: str = "", org: str = "", auth: str = "") -> str:
    """Return VOC with extra lines in the source, the first org, or a replaced auth."""
    text = VOC + "".join(f"        {line}\n" for line in org.splitlines())
    text = text.replace("    organizations:", "".join(
        f"    {line}\n" for line in extra_source.splitlines()) + "    organizations:")
    if auth:
        text = text.replace(f'{{token: "{SECRET}"}}', auth)
    return text


BAD_CONFIGS = [
    # unknown key at each level
    ("sorces: []\n" + VOC, "sorces", "unknown key (did you mean 'sources'?)"),
    ("state: {path: x, mode: 1}\n" + VOC, "state.mode", "unknown key"),
    ("defaults: {intervall: 5s}\n" + VOC, "defaults.intervall", "did you mean 'interval'"),
    (_voc(extra_source="colour: red"), "sources[0].colour", "unknown key"),
    (_voc(auth=f'{{tokn: "{SECRET}"}}'), "sources[0].auth.tokn", "did you mean 'token'"),
    (_voc(org="colour: red"), "sources[0].organizations[0].colour", "unknown key"),
    # a known key at the wrong level says where it belongs
    (_voc(org="max_requests_per_second: 3"),
     "sources[0].organizations[0].max_requests_per_second",
     "allowed only in defaults or a source"),
    (_voc(org="retries: 1"), "sources[0].organizations[0].retries",
     "allowed only in defaults or a source"),
    ("defaults: {base_url: x}\n" + VOC, "defaults.base_url", "allowed only in a source"),
    ("defaults: {job_types: [a]}\n" + VOC, "defaults.job_types",
     "allowed only in an organization"),
    (_voc(extra_source="path: x"), "sources[0].path", "allowed only in state"),
    (_voc(extra_source="token: x"), "sources[0].token", "allowed only in a source's auth"),
    # values
    (VOC.replace(ADDR1, "0x12"), "sources[0].organizations[0].address",
     "expected 0x followed by 40 hex digits, got '0x12'"),
    (_voc(extra_source="interval: 5 minutes"), "sources[0].interval",
     "expected a duration like 500ms, 15s, 5m, 1h30m, got '5 minutes'"),
    (_voc(extra_source="timeout: 0s"), "sources[0].timeout", "expected a duration > 0"),
    (_voc(extra_source="concurrency: -1"), "sources[0].concurrency",
     "expected a number >= 1, got -1"),
    ("defaults: {max_requests_per_second: 0}\n" + VOC, "defaults.max_requests_per_second",
     "expected a number > 0, got 0"),
    (_voc(org="jitter: 1.5"), "sources[0].organizations[0].jitter", "expected a number < 1"),
    (VOC.replace("https://saas.example.org", "ftp://saas.example.org"), "sources[0].base_url",
     "expected an http:// or https:// URL with a host, got 'ftp://saas.example.org'"),
    (VOC.replace("https://", f"https://u:{SECRET}@"), "sources[0].base_url",
     "credentials in base_url are not allowed"),
    (VOC.replace("kind: vocdoni", "kind: jenkins"), "sources[0].kind",
     "expected 'vocdoni', 'ordo' or 'json', got 'jenkins'"),
    (VOC.replace("name: voc", "name: 9voc"), "sources[0].name", "expected a name matching"),
    (_voc(extra_source="api: v3"), "sources[0].api", "expected 'auto', 'v2' or 'v1'"),
    (VOC.replace("organizations:\n", "organizations: sometimes\n").split("      - ")[0],
     "sources[0].organizations", "expected 'auto' or a list of organizations"),
    (_voc(org="job_types: []"), "sources[0].organizations[0].job_types",
     "expected at least one entry"),
    # structure and cross-field rules
    ("sources: []\n", "sources", "expected at least one entry"),
    ("state: {path: x}\n", "sources", "required key is missing"),
    (VOC + VOC.split("sources:\n")[1], "sources[1].name", "duplicate source name 'voc'"),
    (_voc(org="name: acme") + f"      - address: '{ADDR2}'\n        name: acme\n",
     "sources[0].organizations[1].name", "duplicate org label 'acme'"),
    (VOC + f"      - address: '{ADDR1.upper()[2:]}'\n", "sources[0].organizations[1].address",
     "duplicate address"),
    (_voc(extra_source="organization: lidar"), "sources[0].organization",
     "only allowed on ordo sources"),
    (ORDO + "    organizations: auto\n", "sources[0].organizations",
     "only allowed on vocdoni sources"),
    (ORDO + "    api: v2\n", "sources[0].api", "only allowed on vocdoni sources"),
    (ORDO.replace("    organization: lidar\n", ""), "sources[0].organization",
     "required for ordo sources"),
    (VOC.split("    organizations:")[0], "sources[0].organizations",
     "required for vocdoni sources"),
    (VOC.replace("organizations:\n", "organizations: auto\n").split("      - ")[0],
     "sources[0].organizations", "'auto' needs email and password auth"),
    (_voc(auth=f'{{token: "{SECRET}", token_file: /x}}'), "sources[0].auth",
     "token and token_file are mutually exclusive"),
    (_voc(auth="{email: ops@example.org}"), "sources[0].auth",
     "email needs password or password_file"),
    (_voc(auth="{}"), "sources[0].auth", "expected one of: token, token_file"),
    (_voc(auth="{token_file: /nonexistent/asyncjob-token}"), "sources[0].auth.token_file",
     "cannot read /nonexistent/asyncjob-token: No such file or directory"),
    (_voc(auth='{token: ""}'), "sources[0].auth.token", "token is empty"),
    # environment and YAML-level checks
    (VOC.replace("https://saas.example.org", "${MISSING_URL}"), "sources[0].base_url",
     "environment variable MISSING_URL is not set (line 5)"),
    (VOC.replace("https://saas.example.org", "${not valid}"), "sources[0].base_url",
     "invalid variable reference ${not valid}"),
    (_voc(extra_source="interval: 5s\ninterval: 6s"), "sources[0].interval", "duplicate key"),
    ("defaults: {concurrency: true}\n" + VOC, "defaults.concurrency", "expected a number"),
    ("1: x\n" + VOC, "1", "unknown key"),
    (_voc(auth='{token: "${s3cr3t-VALUE-never-print}"}'), "sources[0].auth.token",
     "invalid variable reference"),
]


@pytest.mark.parametrize(("text", "location", "fragment"), BAD_CONFIGS)
def test_bad_config(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, text: str,
                    location: str, fragment: str) -> None:
    monkeypatch.setenv("ORDO_TOKEN", SECRET)
    monkeypatch.delenv("MISSING_URL", raising=False)
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert any(loc == location and fragment in msg for loc, msg in err.details), err.details
    assert f"{path}: {location}: " in str(err)
    assert SECRET not in str(err)
    assert check_config(str(path)) == (1, str(err))


def test_error_names_line(write_config: WriteConfig) -> None:
    path = write_config(VOC.replace(ADDR1, "0x12"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.details[0][1].endswith("(line 8)")


def test_all_errors_reported_together(write_config: WriteConfig) -> None:
    text = _voc(extra_source="concurrency: 0\ntimeout: never", org="colour: red")
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text), env={})
    locations = {loc for loc, _ in info.value.details}
    assert {"sources[0].concurrency", "sources[0].timeout",
            "sources[0].organizations[0].colour"} <= locations
    assert len(str(info.value).splitlines()) == len(info.value.details)


def test_unreadable_secret_file_does_not_leak_content(write_config: WriteConfig,
                                                      tmp_path: pathlib.Path) -> None:
    secret_dir = tmp_path / "secret-dir"
    secret_dir.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(write_config(_voc(auth="{token_file: secret-dir}")), env={})
    (loc, msg), = info.value.details
    assert loc == "sources[0].auth.token_file" and msg.startswith("cannot read secret-dir: ")


def test_example_config_loads(tmp_path: pathlib.Path) -> None:
    (tmp_path / "vocdoni-token").write_text("voc-token\n")
    (tmp_path / "vocdoni-password").write_text("voc-password\n")
    (tmp_path / "ordo-token").write_text("ordo-token\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "VOCDONI_STAGING_TOKEN": "stg-token",
           "ORDO_TOKEN": "ordo-token", "GITHUB_TOKEN": "gh-token",
           "AIRFLOW_PASSWORD": "af-password", "GITLAB_TOKEN": "gl-token"}
    cfg = load_config(REPO / "config.example.yaml", env=env)
    assert {s.kind_as(JsonSettings).spec.preset for s in cfg.sources if s.kind == "json"} == {
        "github-actions", "airflow", "gitlab-ci"}
    kinds = {(s.kind, s.organizations_auto) for s in cfg.sources}
    assert {("vocdoni", False), ("vocdoni", True), ("ordo", False)} <= kinds
    ordo = next(s for s in cfg.sources if s.kind == "ordo")
    assert ordo.base_url.endswith("/ordo")
    assert any(len(s.orgs) >= 2 for s in cfg.sources if s.kind == "vocdoni")
    for secret in ("voc-token", "voc-password", "stg-token", "ordo-token", "gh-token",
                   "af-password", "gl-token"):
        assert secret not in repr(cfg)


def test_every_key_documented() -> None:
    example = (REPO / "config.example.yaml").read_text()
    docs = (REPO / "docs" / "configuration.md").read_text()
    assert [k for k in sorted(ALL_KEYS) if f"{k}:" not in example] == []
    assert [k for k in sorted(ALL_KEYS) if f"`{k}`" not in docs] == []


def test_yaml_anchors_and_merge_keys(write_config: WriteConfig) -> None:
    text = "x-common: &common {interval: 5s, timeout: 2s}\n" + ORDO + "    <<: *common\n"
    with pytest.raises(ConfigError) as info:  # the anchor holder itself is an unknown key
        _load(write_config(text), ORDO_TOKEN="t")
    assert [loc for loc, _ in info.value.details] == ["x-common"]
    text = "defaults: &common {interval: 5s, timeout: 2s}\n" + ORDO + "    <<: *common\n"
    src = _load(write_config(text), ORDO_TOKEN="t").sources[0]
    assert (src.interval, src.timeout) == (5, 2)
