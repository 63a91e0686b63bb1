"""One Vocdoni auth story: the job list needs a manager JWT, got through email + password_file."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference" / "vocdoni-jobs-api.md"


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
