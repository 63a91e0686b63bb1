"""The exporter-toolkit web config file (--web.config.file): TLS, basic auth, extra headers.

Same format as every Prometheus exporter (exporter-toolkit docs/web-configuration.md), so
operators can reuse their files. The file and the certificates it names are re-read when their
mtime changes; an invalid file on re-read fails closed (500) until it is fixed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml

log = structlog.get_logger()

REALM = "asyncjob-exporter"
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    # Python's ssl cannot accept a client certificate without verifying it: the two
    # "any certificate" policies verify against client_ca_file (stricter than Go).
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
HEADERS = (
    "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
    "Strict-Transport-Security",
)
HEADER_VALUES: Mapping[str, tuple[str, ...]] = {
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
}
TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
    "prefer_server_cipher_suites",
)
HTTP_KEYS = ("headers", "http2")
# Valid in exporter-toolkit but not implemented here: say so instead of "unknown key".
UNSUPPORTED = (
    "rate_limit", "cert", "key", "client_ca", "client_allowed_sans", "cipher_suites",
    "curve_preferences",
)
BCRYPT_RE = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
MAX_PASSWORD = 72  # bcrypt's limit; longer passwords never match (as in Go)
AUTH_CACHE_SIZE = 256


class WebConfigError(ValueError):
    """Unreadable or invalid web config; a ValueError so the CLI exits 1 with the message."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Validated tls_server_config; paths already resolved against the file's directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Validated web config; empty means plain HTTP without auth."""

    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)


def _section(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Return a mapping section, rejecting unknown and unsupported keys with a clear message."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key in UNSUPPORTED:
            raise WebConfigError(f"{where}.{key}: not supported by asyncjob-exporter")
        if key not in allowed:
            raise WebConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(allowed)})")
    return value


def _string(section: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    """Return a string field or the default, rejecting other types."""
    value = section.get(key, default)
    if value is not None and not isinstance(value, str):
        raise WebConfigError(f"{where}.{key}: expected a string")
    return value


def _choice(section: Mapping[str, Any], key: str, where: str, choices: Mapping[str, Any],
            default: str) -> str:
    """Return a string field that must be one of `choices`."""
    value = _string(section, key, where, default)
    if value is None or value not in choices:
        raise WebConfigError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _path(section: Mapping[str, Any], key: str, where: str, base: Path) -> Path | None:
    """Return a file path resolved against the config file's directory, as the toolkit does."""
    value = _string(section, key, where, None)
    if value is None or value == "":
        return None
    return base / value


def _parse_tls(raw: Any, base: Path) -> TLSConfig | None:
    """Validate tls_server_config."""
    where = "tls_server_config"
    if raw is None:
        return None
    sec = _section(raw, where, TLS_KEYS)
    cert, key = _path(sec, "cert_file", where, base), _path(sec, "key_file", where, base)
    if cert is None or key is None:
        raise WebConfigError(f"{where}: cert_file and key_file are both required")
    auth = _choice(sec, "client_auth_type", where, CLIENT_AUTH_TYPES, "NoClientCert")
    ca = _path(sec, "client_ca_file", where, base)
    if ca is not None and auth == "NoClientCert":
        raise WebConfigError(f"{where}: client_ca_file is set but client_auth_type is NoClientCert")
    if ca is None and auth != "NoClientCert":
        raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
    low = _choice(sec, "min_version", where, TLS_VERSIONS, "TLS12")
    high = _choice(sec, "max_version", where, TLS_VERSIONS, "TLS13")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise WebConfigError(f"{where}: min_version {low} is above max_version {high}")
    prefer = sec.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    return TLSConfig(cert, key, auth, ca, low, high, prefer)


def _parse_headers(raw: Any) -> dict[str, str]:
    """Validate http_server_config; only the toolkit's security headers are allowed."""
    sec = _section(raw, "http_server_config", HTTP_KEYS)
    if not isinstance(sec.get("http2", True), bool):
        raise WebConfigError("http_server_config.http2: expected true or false")
    headers = _section(sec.get("headers"), "http_server_config.headers", HEADERS)
    out: dict[str, str] = {}
    for name, value in headers.items():
        where = f"http_server_config.headers.{name}"
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise WebConfigError(f"{where}: expected a single-line string")
        allowed = HEADER_VALUES.get(name)
        if allowed and value.lower() not in allowed:
            raise WebConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
        if value:
            out[name] = value
    return out


def _parse_users(raw: Any) -> dict[str, bytes]:
    """Validate basic_auth_users: user name -> bcrypt hash."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError("basic_auth_users: expected a mapping of user name to bcrypt hash")
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(f"basic_auth_users: invalid user name {name!r}")
        if not isinstance(hashed, str) or not BCRYPT_RE.match(hashed):
            raise WebConfigError(f"basic_auth_users.{name}: not a bcrypt hash ($2y$10$...)")
        users[name] = hashed.encode("ascii")
    return users


def parse_web_config(data: Any, base: Path) -> WebConfig:
    """Validate a loaded YAML document; relative paths resolve against `base`."""
    top = _section(data, "web config", TOP_KEYS)
    return WebConfig(
        tls=_parse_tls(top.get("tls_server_config"), base),
        users=_parse_users(top.get("basic_auth_users")),
        headers=_parse_headers(top.get("http_server_config")),
    )


def _read(file: Path) -> tuple[WebConfig, ssl.SSLContext | None]:
    """Read, validate and build the TLS context; WebConfigError names the file."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        config = parse_web_config(data, file.parent)
        ctx = None if config.tls is None else build_ssl_context(config.tls)
    except WebConfigError as exc:
        raise WebConfigError(f"{file}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{file}: cannot read web config: {exc}") from None
    return config, ctx


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """Return a server SSLContext for `tls`; WebConfigError when files do not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"tls_server_config: cannot load cert_file/key_file: {exc}") from None
    ctx.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config: cannot load client_ca_file: {exc}") from None
    return ctx


def _credentials(header: str | None) -> tuple[str, bytes] | None:
    """Return (user, password) from an Authorization: Basic header, None if malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def _stamp(paths: list[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    """Return a cheap change marker (mtime, size, inode) per file; None for a missing one."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _tls_files(config: WebConfig) -> list[Path]:
    """Return the certificate files whose change must rebuild the TLS context."""
    tls = config.tls
    if tls is None:
        return []
    return [p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p is not None]


def _dummy_hash(users: Mapping[str, bytes]) -> bytes:
    """Return a hash with the users' highest cost, so unknown users take as long as known ones."""
    costs = [int(m.group(1)) for h in users.values() if (m := BCRYPT_RE.match(h.decode()))]
    return bcrypt.hashpw(b"not-a-password", bcrypt.gensalt(max(costs, default=10)))


class WebConfigWatcher:
    """The current web config, re-read when the file or its certificates change (cheap stats)."""

    def __init__(self, path: str | Path) -> None:
        self._file = Path(path)
        self._lock = threading.Lock()
        self._error: str | None = None
        self._stamp = _stamp([self._file])
        self._config, self._ssl = _read(self._file)
        self._stamp += _stamp(_tls_files(self._config))
        self.tls_enabled = self._config.tls is not None
        self._dummy = _dummy_hash(self._config.users)
        self._verified: dict[bytes, None] = {}

    def current(self) -> WebConfig:
        """Return the config, re-reading it on change; WebConfigError while the file is invalid."""
        paths = [self._file, *_tls_files(self._config)]
        if _stamp(paths) != self._stamp:
            with self._lock:
                if _stamp(paths) != self._stamp:
                    self._reload()
        if self._error is not None:
            raise WebConfigError(self._error)
        return self._config

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return the last good TLS context (None when TLS is off); requests then see errors."""
        try:
            self.current()
        except WebConfigError:
            pass  # handshake with the last good context, then answer 500
        return self._ssl

    def authenticate(self, config: WebConfig, header: str | None) -> bool:
        """Check an Authorization header against basic_auth_users (always true without users)."""
        if not config.users:
            return True
        creds = _credentials(header)
        user, password = creds if creds is not None else ("", b"")
        hashed = config.users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), hashed or b"", password])).digest()
        if hashed is not None and key in self._verified:
            return True
        ok = bcrypt.checkpw(password[:MAX_PASSWORD], hashed or self._dummy)
        if not (ok and hashed is not None and creds is not None and len(password) <= MAX_PASSWORD):
            return False
        if len(self._verified) >= AUTH_CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = None
        return True

    def _reload(self) -> None:
        """Re-read the file; on failure keep failing closed until it changes again."""
        stamp = _stamp([self._file])
        try:
            config, ctx = _read(self._file)
            if (config.tls is not None) != self.tls_enabled:
                raise WebConfigError(f"{self._file}: turning TLS on or off needs a restart")
        except WebConfigError as exc:
            self._stamp = stamp + _stamp(_tls_files(self._config))
            self._error = str(exc)
            log.error("web_config_invalid", error=str(exc))
            return
        self._config, self._ssl, self._error = config, ctx, None
        self._stamp = stamp + _stamp(_tls_files(config))
        self._dummy = _dummy_hash(config.users)
        self._verified = {}
        log.info("web_config_reloaded", tls=self.tls_enabled, users=len(config.users))
