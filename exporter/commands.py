"""Subcommand implementations: run, once, simulate, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile

import httpx
import structlog
from prometheus_client import generate_latest

from exporter.app import RunOptions, make_registry, run_daemon
from exporter.config import Config, ConfigError, load_config
from exporter.scheduler import Scheduler
from exporter.server import parse_listen
from exporter.sharding import Shard, parse_shard

log = structlog.get_logger()


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _shard(text: str | None) -> Shard | None:
    return parse_shard(text) if text else None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon; exit 1 on a bad config or web config."""
    config = _load(args.config_file)
    if config is None:
        return 1
    try:
        shard = _shard(args.shard)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    options = RunOptions(args.config_file, args.listen, args.web_config_file, shard,
                         enable_lifecycle=args.enable_lifecycle)
    return run_daemon(config, options)  # OSError (port, state file), ValueError: cli.main


async def _once(config: Config, shard: Shard | None) -> tuple[bool, bytes]:
    scheduler = Scheduler(config, shard=shard)
    ok = await scheduler.poll_all_once()
    text = generate_latest(make_registry(scheduler))
    await scheduler.stop()
    return ok, text


def cmd_once(args: argparse.Namespace) -> int:
    """Poll every org once, print the exposition; exit 1 if any org or discovery failed."""
    config = _load(args.config_file)
    if config is None:
        return 1
    shard = _shard(args.shard)  # a bad --shard is an error before any request
    ok, text = asyncio.run(_once(config, shard))
    sys.stdout.write(text.decode())
    return 0 if ok else 1


def _listen_address(listen: str) -> tuple[str, int]:
    """Split --listen the way the server does; an empty host means loopback here."""
    host, port = parse_listen(listen)
    return host or "127.0.0.1", port


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the fake APIs in the foreground."""
    from exporter.simulator import SimOptions, run_simulator

    host, port = _listen_address(args.listen)
    knobs = {k: v for k, v in vars(args).items() if k in SimOptions.__dataclass_fields__}
    try:
        return run_simulator(SimOptions(listen_host=host, listen_port=port, **knobs))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {args.listen}: {exc.strerror}") from None


DEMO_CONFIG = """\
state:
  path: ":memory:"
defaults:
  interval: {interval}
  timeout: 5s
  max_requests_per_second: 50   # the simulator is local; the default 5 suits real APIs
sources:
  - name: vocdoni-demo
    kind: vocdoni
    base_url: {url}/vocdoni
    api: auto
    auth:
      token: ${{ASYNCJOB_DEMO_TOKEN}}
    organizations:
{orgs}
  - name: vocdoni-legacy
    kind: vocdoni
    base_url: {url}/vocdoni-v1
    api: auto
    auth:
      token: ${{ASYNCJOB_DEMO_TOKEN}}
    organizations:
{v1_orgs}
  - name: ordo-demo
    kind: ordo
    base_url: {url}/ordo
    auth:
      token: ${{ASYNCJOB_DEMO_TOKEN}}
    organization: lidar
  - name: github-demo
    kind: json
    preset: github-actions   # the simulated Ordo jobs, shown as GitHub Actions runs
    base_url: {url}/github
    auth:
      token: ${{ASYNCJOB_DEMO_TOKEN}}
    organizations:
      - address: sim/ordo
  - name: airflow-demo
    kind: json
    preset: airflow          # the simulated Ordo jobs, shown as Airflow DAG runs
    base_url: {url}/airflow
    auth:
      username: admin
      password: ${{ASYNCJOB_DEMO_TOKEN}}
    organizations:
      - address: sim
  - name: gitlab-demo
    kind: json
    preset: gitlab-ci        # the simulated Ordo jobs, shown as GitLab pipelines
    base_url: {url}/gitlab
    auth:
      token: ${{ASYNCJOB_DEMO_TOKEN}}
    organizations:
      - address: sim/ordo
"""


def demo_config(url: str, v2_orgs: list[str], v1_orgs: list[str], interval: str) -> str:
    """Return the embedded demo config for a running simulator."""
    def lines(addrs: list[str]) -> str:
        return "\n".join(f'      - address: "{a}"' for a in addrs)

    return DEMO_CONFIG.format(url=url, interval=interval, orgs=lines(v2_orgs),
                              v1_orgs=lines(v1_orgs))


def sim_orgs(url: str) -> dict[str, list[str]]:
    """Return the simulator's org addresses per mount, from its truth endpoint."""
    truth = httpx.get(f"{url}/_sim/truth", timeout=10).json()
    return {mount: sorted(truth.get(mount, {})) for mount in ("vocdoni", "vocdoni-v1")}


SIM_URL = "http://127.0.0.1:8801"  # where `asyncjob-exporter simulate` listens by default


def print_demo_config(interval: str) -> int:
    """Print the demo's config for a default `simulate` (same seed, same orgs) and exit 0."""
    from exporter.simulator import SimOptions
    from exporter.simulator.world import World

    opts = SimOptions()
    world = World(opts)
    text = demo_config(SIM_URL, sorted(world.vocdoni.orgs), sorted(world.vocdoni_v1.orgs),
                       interval)
    print(f"""\
# asyncjob-exporter demo config: a working template. To run it yourself:
#   asyncjob-exporter simulate &      # the fake APIs on {SIM_URL}, these very orgs
#   ASYNCJOB_DEMO_TOKEN={opts.token} asyncjob-exporter run --config.file demo.yaml
# Every key is explained in config.example.yaml and docs/configuration.md.
{text}""", end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the simulator and the exporter in one process and print the URL."""
    from exporter.simulator import SimOptions, start_simulator

    if args.print_config:
        return print_demo_config(args.interval)
    opts = SimOptions(listen_host="127.0.0.1", listen_port=0)
    sim = start_simulator(opts)
    orgs = sim_orgs(sim.url)
    os.environ["ASYNCJOB_DEMO_TOKEN"] = opts.token
    text = demo_config(sim.url, orgs["vocdoni"], orgs["vocdoni-v1"], args.interval)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="asyncjob-demo-",
                                     delete=False) as fh:
        fh.write(text)
    config = load_config(fh.name)
    host, port = _listen_address(args.listen)
    print(f"asyncjob-exporter demo: simulator at {sim.url}", flush=True)
    print(f"asyncjob-exporter demo: metrics at http://{host}:{port}/metrics", flush=True)
    try:
        return run_daemon(config, RunOptions(fh.name, args.listen))
    finally:
        sim.stop()
        os.unlink(fh.name)
