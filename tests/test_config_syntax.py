"""check-config --syntax-only: structure without secret files or the environment (CI)."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from exporter.cli import main

GOOD = """
defaults:
  interval: ${POLL_INTERVAL}
sources:
  - name: voc
    kind: vocdoni
    base_url: ${VOC_URL}
    auth:
      email: ops@example.org
      password_file: /run/secrets/does-not-exist-in-ci
    organizations:
      - address: "0xADDR"
  - name: ordo
    kind: ordo
    base_url: https://ordo.example.org
    auth: {token: "${ORDO_TOKEN}"}
    organization: lidar
""".replace("ADDR", "1" * 40)


def _write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_syntax_only_accepts_missing_secrets_and_env(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("POLL_INTERVAL", "VOC_URL", "ORDO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = _write(tmp_path, GOOD)
    assert main(["check-config", str(path)]) == 1  # the full check needs secrets and env
    capsys.readouterr()
    assert main(["check-config", "--syntax-only", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SYNTAX OK" in out and "secret files not read" in out and "3 ${VAR}" in out


def test_syntax_only_never_reads_the_environment(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLL_INTERVAL", "not-a-duration")  # would fail if it were read
    monkeypatch.setenv("ORDO_TOKEN", "s3cret-token-value")
    assert main(["check-config", "--syntax-only", str(_write(tmp_path, GOOD))]) == 0
    assert "s3cret" not in capsys.readouterr().out


@pytest.mark.parametrize(("change", "where"), [
    (("kind: ordo", "kind: ordoo"), "sources[1].kind"),
    (("organization: lidar", "organization: lidar\n    intervall: 5s"), "sources[1].intervall"),
    (("name: ordo", "name: voc"), "sources[1].name"),
    (("address: \"0x" + "1" * 40, "address: \"0x12"), "sources[0].organizations[0].address"),
])
def test_syntax_only_still_reports_structure_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
    change: tuple[str, str], where: str,
) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    assert main(["check-config", "--syntax-only", str(path)]) == 1
    assert f": {where}:" in capsys.readouterr().err


def test_syntax_only_reports_yaml_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "sources: [\n")
    assert main(["check-config", "--syntax-only", str(path)]) == 1
    assert "config.yaml" in capsys.readouterr().err
