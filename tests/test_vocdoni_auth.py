"""Tests of exporter.sources.vocdoni_auth: token, login, refresh, re-login; the auth story."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import structlog
import yaml

from exporter.sources.base import ClientSettings, PollError
from exporter.sources.vocdoni import VocdoniSource
from exporter.sources.vocdoni_auth import VocdoniAuth
from tests.fakes import FakeClock
from tests.fakes_vocdoni import (
    T0,
    TARGET,
    FakeVocdoni,
    Known,
    login_source,
    make_source,
    poll,
    run,
)

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference" / "vocdoni-jobs-api.md"


def test_static_token_is_sent() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    sent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("Authorization", ""))
        return await fake(request)

    src = VocdoniSource("voc", ClientSettings(base_url="http://vocdoni.test"), token="static-token",
                        transport=httpx.MockTransport(handler))
    result = run(src.poll(TARGET, Known(), True))
    assert len(result.jobs) == 1
    assert sent and all(h == "Bearer static-token" for h in sent)
    assert fake.count("/auth/", "POST") == 0


def test_login_then_bearer_token() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    fake.tokens = set()
    with structlog.testing.capture_logs() as logs:
        poll(login_source(fake), Known(), True)
    assert fake.count("/auth/login", "POST") == 1
    assert "hunter2" not in repr(logs) and "jwt-1" not in repr(logs)


def test_refresh_when_token_nears_expiry() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    fake.tokens = set()
    fake.expirity = "2027-01-30T08:00:00Z"  # 15 days after T0
    clock = FakeClock(T0)
    src = login_source(fake, clock)
    known = Known()
    poll(src, known, False)
    clock.now += 12 * 86400  # 3 days left: more than 10% of 15 days
    poll(src, known, False)
    assert fake.count("/auth/refresh", "POST") == 0
    clock.now += 2 * 86400  # 1 day left: refresh
    poll(src, known, False)
    assert fake.count("/auth/refresh", "POST") == 1
    assert fake.count("/auth/login", "POST") == 1


def test_relogin_once_on_401() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    fake.tokens = set()
    src = login_source(fake)
    known = Known()
    poll(src, known, True)
    fake.tokens = set()  # server restarted with a new secret: old JWTs are refused
    result = poll(src, known, False)
    assert len(result.jobs) == 1
    assert fake.count("/auth/login", "POST") == 2


def test_wrong_password_is_auth_error() -> None:
    fake = FakeVocdoni()
    fake.tokens = set()
    with structlog.testing.capture_logs() as logs, pytest.raises(PollError) as info:
        run(login_source(fake, password="wrong-pass").poll(TARGET, Known(), True))
    assert info.value.reason == "auth"
    assert fake.count("/auth/login", "POST") == 1
    assert "wrong-pass" not in str(info.value) and "wrong-pass" not in repr(logs)


def test_revoked_static_token_is_auth_error_without_login() -> None:
    fake = FakeVocdoni()
    fake.tokens = set()
    with pytest.raises(PollError) as info:
        run(make_source(fake, api="v2").poll(TARGET, Known(), True))
    assert info.value.reason == "auth"
    assert fake.count("/auth/", "POST") == 0


def test_refused_refresh_falls_back_to_login() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    fake.tokens = set()
    clock = FakeClock(T0)
    src = login_source(fake, clock)
    known = Known()
    poll(src, known, False)
    clock.now += 14 * 86400
    fake.tokens = set()  # the refresh is refused with 401/40001
    poll(src, known, False)
    assert fake.count("/auth/refresh", "POST") == 1
    assert fake.count("/auth/login", "POST") == 2


def test_repr_keeps_secrets_out() -> None:
    login = VocdoniAuth(email="ops@example.org", password="hunter2-secret", clock=FakeClock(T0))
    static = VocdoniAuth(token="static-token", clock=FakeClock(T0))
    assert login.can_login and not static.can_login
    for auth in (login, static):
        assert "hunter2" not in repr(auth) and "static-token" not in repr(auth)


# --- the auth story: the job list needs a manager JWT, got through email + password_file


def _vocdoni_sources(text: str) -> list[dict[str, object]]:
    data = yaml.safe_load(text)
    return [s for s in data["sources"] if s["kind"] == "vocdoni"]


def test_the_reference_still_says_api_keys_cannot_list_jobs() -> None:
    ref = REFERENCE.read_text(encoding="utf-8")
    assert "**API keys are refused** with 403/40157" in ref
    assert "needs a JWT of a dedicated verified user with the `manager` role" in ref


def test_shipped_configs_log_in_with_email_and_password_file() -> None:
    image = (REPO / "deploy" / "docker" / "config.yaml").read_text(encoding="utf-8")
    (src,) = _vocdoni_sources(image)
    assert set(src["auth"]) == {"email", "password_file"}  # type: ignore[arg-type]
    assert "API keys" in image and "manager" in image  # the file says why
    cm = yaml.safe_load((REPO / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    for text in (cm["data"]["config.yaml"], example):
        new_api = [s for s in _vocdoni_sources(text) if s.get("api") != "v1"]
        assert new_api and all(
            set(s["auth"]) == {"email", "password_file"} for s in new_api)  # type: ignore[arg-type]
    assert "vsk_" in example and "403" in example


def test_security_doc_tells_the_same_story() -> None:
    doc = " ".join((REPO / "docs" / "security.md").read_text(encoding="utf-8").split())
    for part in ("password_file", "manager", "vsk_", "403/40157", "deploy/docker/config.yaml",
                 "refreshes the JWT"):
        assert part in doc, part
