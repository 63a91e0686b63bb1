"""Command line: subcommands, default `run`, ASYNCJOB_* environment defaults, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli import _with_default_command, build_parser, main

GOOD = """
sources:
  - name: s
    kind: ordo
    base_url: http://127.0.0.1:9/ordo
    auth: {token: "${TOKEN}"}
    organization: lidar
"""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_check_config_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    monkeypatch.setenv("TOKEN", "very-secret-token")
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "lidar" in out and "very-secret-token" not in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("organization:", "organisation:"))
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "sources[0]" in err


def test_run_is_the_default_subcommand() -> None:
    assert _with_default_command(["--config.file", "x"]) == ["run", "--config.file", "x"]
    assert _with_default_command(["once", "--config", "x"]) == ["once", "--config", "x"]
    args = build_parser().parse_args(_with_default_command(["--config", "x.yaml"]))
    assert args.command == "run" and args.config_file == "x.yaml" and args.listen == ":9877"


def test_flags_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCJOB_WEB_LISTEN_ADDRESS", "127.0.0.1:1234")
    monkeypatch.setenv("ASYNCJOB_SHARD", "1/2")
    monkeypatch.setenv("ASYNCJOB_CONFIG_FILE", "/etc/c.yaml")
    monkeypatch.setenv("ASYNCJOB_LOG_LEVEL", "debug")
    args = build_parser().parse_args(["run"])
    assert (args.listen, args.shard, args.config_file, args.log_level) == (
        "127.0.0.1:1234", "1/2", "/etc/c.yaml", "debug")


def test_run_with_invalid_config_exits_1(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: []\n")
    assert main(["run", "--config.file", str(bad), "--log.format", "json"]) == 1
    assert "bad.yaml" in capsys.readouterr().err


def test_run_with_bad_shard_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    monkeypatch.setenv("TOKEN", "t")
    assert main(["run", "--config.file", str(good), "--shard", "5/3"]) == 1
    assert "--shard" in capsys.readouterr().err


def test_no_arguments_runs_when_the_config_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ASYNCJOB_CONFIG_FILE", raising=False)
    assert _with_default_command([]) == []
    monkeypatch.setenv("ASYNCJOB_CONFIG_FILE", "/etc/c.yaml")
    assert _with_default_command([]) == ["run"]


def test_log_level_takes_prometheus_spelling_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["run", "--config", "x", "--log.level", "warn"])
    assert args.log_level == "warn"
    monkeypatch.setenv("ASYNCJOB_LOG_LEVEL", "warn")
    assert build_parser().parse_args(["run", "--config", "x"]).log_level == "warn"


def test_bad_log_level_in_the_environment_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASYNCJOB_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit) as exc:
        main(["once", "--config", "x.yaml"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("asyncjob-exporter: ASYNCJOB_LOG_LEVEL='verbose': expected one of "
                   "debug, info, warn, warning, error")


def test_once_with_shard_out_of_range_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    monkeypatch.setenv("TOKEN", "t")
    assert main(["once", "--config.file", str(good), "--shard", "3/3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--shard" in err and "Traceback" not in err
def test_enable_lifecycle_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /-/reload is off unless --web.enable-lifecycle or its variable turns it on."""
    args = build_parser().parse_args(["run", "--config.file", "c.yaml"])
    assert args.enable_lifecycle is False
    args = build_parser().parse_args(["run", "--config.file", "c.yaml", "--web.enable-lifecycle"])
    assert args.enable_lifecycle is True
    monkeypatch.setenv("ASYNCJOB_WEB_ENABLE_LIFECYCLE", "true")
    assert build_parser().parse_args(["run", "--config.file", "c.yaml"]).enable_lifecycle is True
    monkeypatch.setenv("ASYNCJOB_WEB_ENABLE_LIFECYCLE", "false")
    assert build_parser().parse_args(["run", "--config.file", "c.yaml"]).enable_lifecycle is False
