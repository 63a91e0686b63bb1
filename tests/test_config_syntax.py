"""check-config --syntax-only: structure without secret files or the environment (CI)."""

from __future__ import annotations

import pytest

from exporter.cli import main
from tests.fakes import WriteConfig

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


def test_syntax_only_accepts_missing_secrets_and_env(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("POLL_INTERVAL", "VOC_URL", "ORDO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = write_config(GOOD)
    assert main(["check-config", str(path)]) == 1  # the full check needs secrets and env
    capsys.readouterr()
    assert main(["check-config", "--syntax-only", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SYNTAX OK" in out and "secret files not read" in out and "3 ${VAR}" in out


def test_syntax_only_never_reads_the_environment(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLL_INTERVAL", "not-a-duration")  # would fail if it were read
    monkeypatch.setenv("ORDO_TOKEN", "s3cret-token-value")
    assert main(["check-config", "--syntax-only", str(write_config(GOOD))]) == 0
    assert "s3cret" not in capsys.readouterr().out


@pytest.mark.parametrize(("change", "where"), [
    (("kind: ordo", "kind: ordoo"), "sources[1].kind"),
    (("organization: lidar", "organization: lidar\n    intervall: 5s"), "sources[1].intervall"),
    (("name: ordo", "name: voc"), "sources[1].name"),
    (("address: \"0x" + "1" * 40, "address: \"0x12"), "sources[0].organizations[0].address"),
])
def test_syntax_only_still_reports_structure_errors(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str],
    change: tuple[str, str], where: str,
) -> None:
    path = write_config(GOOD.replace(*change))
    assert main(["check-config", "--syntax-only", str(path)]) == 1
    assert f": {where}:" in capsys.readouterr().err


def test_syntax_only_reports_yaml_errors(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("sources: [\n")
    assert main(["check-config", "--syntax-only", str(path)]) == 1
    assert "config.yaml" in capsys.readouterr().err
