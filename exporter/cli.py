"""Command line: run (default), check-config, once, simulate, demo, --version."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

import structlog

from exporter import __version__
from exporter.log import LEVELS, setup_logging

SUBCOMMANDS = ("run", "check-config", "once", "simulate", "demo")
DEFAULT_LISTEN = ":9877"


def _env(flag: str) -> str:
    """Return the ASYNCJOB_* variable name of a flag (dots and dashes become underscores)."""
    return "ASYNCJOB_" + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def _add(parser: argparse.ArgumentParser, *flags: str, **kwargs: object) -> None:
    """Add a flag whose default comes from its ASYNCJOB_* environment variable."""
    env_value = os.environ.get(_env(flags[0]))
    choices = kwargs.get("choices")
    if env_value is not None and isinstance(choices, tuple) and env_value not in choices:
        # argparse checks choices only on the command line, never on a default
        print(f"asyncjob-exporter: {_env(flags[0])}={env_value!r}: expected one of "
              f"{', '.join(choices)}", file=sys.stderr)
        raise SystemExit(2)
    if env_value is not None:
        kwargs["default"] = env_value
        kwargs.pop("required", None)
    help_text = str(kwargs.get("help", ""))
    kwargs["help"] = f"{help_text} (env {_env(flags[0])})".strip()
    parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]


def _add_bool(parser: argparse.ArgumentParser, flag: str, *, dest: str, help: str) -> None:
    """Add an on/off flag; its ASYNCJOB_* variable turns it on with 1/true/yes/on."""
    value = os.environ.get(_env(flag), "").strip().lower()
    parser.add_argument(flag, dest=dest, action="store_true",
                        default=value in ("1", "true", "yes", "on"),
                        help=f"{help} (env {_env(flag)}=true)")


def _logging_flags(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--log.level", dest="log_level", default="info", choices=LEVELS,
         help="log level")
    _add(parser, "--log.format", dest="log_format", default=None, choices=("json", "console"),
         help="log format; default console on a TTY, else json")


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the exporter (default)")
    _add(p, "--config.file", "--config", dest="config_file", required=True,
         help="YAML config file")
    _add(p, "--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
         help="HOST:PORT to serve /metrics on")
    _add(p, "--web.config.file", dest="web_config_file", default=None,
         help="exporter-toolkit web config (TLS, basic auth)")
    _add(p, "--shard", dest="shard", default=None,
         help="INDEX/COUNT: poll only this replica's share of the orgs")
    _add_bool(p, "--web.enable-lifecycle", dest="enable_lifecycle",
              help="allow POST /-/reload (as Prometheus); SIGHUP always reloads")
    _logging_flags(p)


def _once_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("once", help="poll every org once and print the exposition")
    _add(p, "--config.file", "--config", dest="config_file", required=True,
         help="YAML config file")
    _add(p, "--shard", dest="shard", default=None, help="INDEX/COUNT")
    _logging_flags(p)


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from exporter.simulator import SimOptions

    p = sub.add_parser(
        "simulate", help="serve a fake Vocdoni + Ordo API for demos and tests",
        description="Serve fake Vocdoni (new and old API) and Ordo APIs whose jobs start, progress,"
        " fail and get stuck on a simulated clock. At start it prints its org addresses,"
        " credentials and the truth endpoint (GET /_sim/truth: what the APIs hold right now).",
    )
    _add(p, "--listen", dest="listen", default="127.0.0.1:8801",
         help="HOST:PORT to serve on; port 0 picks a free one (default 127.0.0.1:8801)")
    for f in dataclasses.fields(SimOptions):
        if f.name in ("listen_host", "listen_port"):
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        text = str(f.metadata.get("help", f.name))
        if isinstance(default, bool):
            _add(p, flag, dest=f.name, action="store_true", default=default,
                 help=f"{text} (default off)")
        else:
            _add(p, flag, dest=f.name, type=type(default), default=default,
                 help=f"{text} (default {default})")
    _logging_flags(p)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="asyncjob-exporter",
        description="Prometheus exporter for asynchronous job APIs (Vocdoni, Ordo).",
    )
    parser.add_argument("--version", action="version", version=f"asyncjob-exporter {__version__}")
    sub = parser.add_subparsers(dest="command")
    _run_parser(sub)
    check = sub.add_parser("check-config", help="validate a config file; exit 0 valid, 1 invalid")
    check.add_argument("file")
    check.add_argument("--syntax-only", action="store_true",
                       help="check structure only: read no *_file secret, resolve no ${VAR} (CI)")
    _once_parser(sub)
    _simulate_parser(sub)
    demo = sub.add_parser("demo", help="run the simulator and the exporter together")
    _add(demo, "--web.listen-address", dest="listen", default="127.0.0.1:9877",
         help="HOST:PORT of the exporter")
    _add(demo, "--interval", dest="interval", default="2s", help="poll interval of the demo")
    demo.add_argument("--print-config", action="store_true",
                      help="print the exporter config the demo generates (for a default "
                      "`simulate`) and exit")
    _logging_flags(demo)
    return parser


def _with_default_command(argv: Sequence[str]) -> list[str]:
    """Insert `run` when no subcommand is given, as `run` is the default."""
    args = list(argv)
    if not args:  # a container may configure everything through ASYNCJOB_* variables
        return ["run"] if _env("--config.file") in os.environ else args
    if args[0] in SUBCOMMANDS or args[0] in ("-h", "--help", "--version"):
        return args
    return ["run", *args]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        build_parser().print_help()
        return 2
    if args.command == "check-config":
        from exporter.config import check_config
        from exporter.config_syntax import check_syntax

        code, text = (check_syntax if args.syntax_only else check_config)(args.file)
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    setup_logging(args.log_level, args.log_format)
    from exporter import commands

    handlers = {
        "run": commands.cmd_run,
        "once": commands.cmd_once,
        "simulate": commands.cmd_simulate,
        "demo": commands.cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a startup failure is one line naming the cause, not a traceback
        print(f"asyncjob-exporter {args.command}: {_one_line(exc)}", file=sys.stderr)
        structlog.get_logger().debug("command failed", exc_info=True)
        return 1


def _one_line(exc: BaseException) -> str:
    """Return an error's message on one line; the type name when it has no message."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:  # no "[Errno 98]" prefix
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return text or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
