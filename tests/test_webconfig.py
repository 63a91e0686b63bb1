"""Web config file: validation, basic auth, TLS and mTLS, re-read on change."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from exporter.render import MetricsCache
from exporter.server import ExporterServer
from exporter.webconfig import WebConfigError, WebConfigWatcher

PASSWORD = "s3cret"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
OTHER_HASH = bcrypt.hashpw(b"other", bcrypt.gensalt(4)).decode()



def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _leaf(name: str, ext: str, cwd: Path) -> None:
    """Create `name`.key/.crt signed by the test CA with extensions `ext`."""
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a directory with a CA, a server cert for 127.0.0.1 and a client cert."""
    assert shutil.which("openssl"), "openssl CLI missing"
    cwd = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)
    _leaf("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\n", cwd)
    _leaf("client", "extendedKeyUsage=clientAuth\n", cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    """Write `text` and move the mtime forward so the watcher sees a change."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Served:
    """A server started with a web config file."""

    def __init__(self, config: Path) -> None:
        self.server = ExporterServer("127.0.0.1:0", MetricsCache(CollectorRegistry()),
                                     ready=lambda: (True, {}), web_config_file=str(config),
                                     version="1.0.0", idle_timeout=2.0)
        self.server.start()

    def get(self, path: str = "/healthz", headers: dict[str, str] | None = None,
            context: ssl.SSLContext | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        if context is None:
            conn: http.client.HTTPConnection = http.client.HTTPConnection(
                "127.0.0.1", self.server.port, timeout=5)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=5,
                                               context=context)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    config = write(tmp_path / "web.yml", f"""
basic_auth_users:
  alice: {HASH}
http_server_config:
  headers:
    X-Frame-Options: deny
    Content-Security-Policy: "default-src 'none'"
""")
    s = Served(config)
    yield s, config
    s.server.stop()


def test_basic_auth(served: tuple[Served, Path]) -> None:
    s, _ = served
    resp, _ = s.get("/metrics")
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate") == 'Basic realm="asyncjob-exporter"'
    assert resp.getheader("X-Frame-Options") == "deny"
    assert s.get(headers=basic("alice", "wrong"))[0].status == 401
    assert s.get(headers=basic("mallory", PASSWORD))[0].status == 401
    assert s.get(headers={"Authorization": "Basic !!!"})[0].status == 401
    assert s.get(headers={"Authorization": "Bearer x"})[0].status == 401
    resp, body = s.get(headers=basic("alice", PASSWORD))
    assert (resp.status, body) == (200, b"ok\n")
    assert resp.getheader("Content-Security-Policy") == "default-src 'none'"
    assert s.get(headers=basic("alice", PASSWORD))[0].status == 200  # cached success


def test_unknown_user_costs_a_bcrypt_check(
    served: tuple[Served, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = served
    checked: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    assert s.get(headers=basic("mallory", PASSWORD))[0].status == 401
    assert s.get(headers=basic("alice", "x" * 100))[0].status == 401
    assert len(checked) == 2
    assert checked[0].startswith(b"$2b$04$")  # dummy hash with the users' cost


def test_file_reread_on_change(served: tuple[Served, Path]) -> None:
    s, config = served
    assert s.get(headers=basic("alice", PASSWORD))[0].status == 200
    write(config, f"basic_auth_users:\n  bob: {OTHER_HASH}\n")
    assert s.get(headers=basic("alice", PASSWORD))[0].status == 401
    assert s.get(headers=basic("bob", "other"))[0].status == 200
    write(config, "basic_auth_users: [oops\n")
    resp, _ = s.get(headers=basic("bob", "other"))
    assert resp.status == 500, "an invalid file fails closed"
    write(config, "")
    assert s.get()[0].status == 200


@pytest.mark.parametrize(("text", "message"), [
    ("nope: 1\n", "web config.nope: unknown key"),
    ("rate_limit: {interval: 1s}\n", "rate_limit: not supported"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users: [a]\n", "basic_auth_users: expected a mapping"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "X-Powered-By: unknown key"),
    ("tls_server_config:\n  cert_file: a.crt\n", "cert_file and key_file are both required"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n",
     "client_auth_type: 'Maybe' is not one of"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
     "min_version: 'TLS10'"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
     "client_ca_file is set but client_auth_type is NoClientCert"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
     "cannot load cert_file/key_file"),
    ("tls_server_config:\n  cipher_suites: [x]\n", "cipher_suites: not supported"),
    ("- a\n", "expected a mapping"),
    ("a: [\n", "cannot read web config"),
])
def test_invalid_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "web.yml", text)
    with pytest.raises(WebConfigError) as err:
        WebConfigWatcher(path).current()
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read web config"):
        WebConfigWatcher(tmp_path / "absent.yml").current()


def test_invalid_file_fails_server_construction(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", "bogus: true\n")
    with pytest.raises(WebConfigError):
        ExporterServer("127.0.0.1:0", MetricsCache(CollectorRegistry()),
                       ready=lambda: (True, {}), web_config_file=str(path), version="1")


def test_empty_file_means_no_auth_no_tls(tmp_path: Path) -> None:
    config = WebConfigWatcher(write(tmp_path / "web.yml", "")).current()
    assert config.tls is None and not config.users and not config.headers


def _tls_config(tmp_path: Path, pki: Path, extra: str = "") -> Path:
    """Write a TLS web config using relative paths (resolved against the file's directory)."""
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(pki / name, tmp_path / name)
    return write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: server.crt\n"
                 f"  key_file: server.key\n{extra}")


def _client(pki: Path, cert: bool = False, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    for key, value in kwargs.items():
        setattr(ctx, key, value)
    if cert:
        ctx.load_cert_chain(pki / "client.crt", pki / "client.key")
    return ctx


def test_tls(tmp_path: Path, pki: Path) -> None:
    s = Served(_tls_config(tmp_path, pki))
    try:
        resp, body = s.get(context=_client(pki))
        assert (resp.status, body) == (200, b"ok\n")
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            s.get()  # plain HTTP to a TLS port
        assert s.get(context=_client(pki))[0].status == 200, "server survives a plain client"
    finally:
        s.server.stop()


def test_tls_min_version(tmp_path: Path, pki: Path) -> None:
    s = Served(_tls_config(tmp_path, pki, "  min_version: TLS13\n"))
    try:
        old = _client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            s.get(context=old)
        assert s.get(context=_client(pki))[0].status == 200
    finally:
        s.server.stop()


def test_client_cert_required(tmp_path: Path, pki: Path) -> None:
    extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    s = Served(_tls_config(tmp_path, pki, extra))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            s.get(context=_client(pki))
        resp, _ = s.get(context=_client(pki, cert=True))
        assert resp.status == 200
    finally:
        s.server.stop()


def test_turning_tls_off_needs_restart(tmp_path: Path, pki: Path) -> None:
    config = _tls_config(tmp_path, pki)
    watcher = WebConfigWatcher(config)
    write(config, "")
    with pytest.raises(WebConfigError, match="needs a restart"):
        watcher.current()
    assert watcher.ssl_context() is not None, "handshakes keep the last good context"


def test_rotated_certificate_rebuilds_the_context(tmp_path: Path, pki: Path) -> None:
    config = _tls_config(tmp_path, pki)
    watcher = WebConfigWatcher(config)
    first = watcher.ssl_context()
    assert watcher.ssl_context() is first, "no change, no rebuild"
    write(tmp_path / "server.crt", (pki / "server.crt").read_text())
    second = watcher.ssl_context()
    assert second is not None and second is not first
