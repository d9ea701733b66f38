# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WSGI application: ``GET /auth/token`` of the Distribution token spec, ``POST /events``
for the registry's notifications, ``/healthz``, and ``GET /metrics`` (Prometheus, metrics.py;
404 when metrics are off).

A token's ``access`` is always what was asked intersected with what is granted: lack
of rights gives an empty list, never an error. Wrong credentials give 401 with a Basic
challenge, a malformed request 400, an unusable store 503; repeated failed logins get
429 with Retry-After before their password is even checked (limits.py). Every decision, and every
event the registry notifies, is written as one JSON line to the audit log (see audit.py).

The events listener is a TCP port on loopback (Distribution cannot post to a unix
socket); it answers only ``/events`` and ``/healthz`` (never ``/metrics``), so local processes cannot reach
``/auth/token`` past the gateway's rate limits or set its ``X-Real-IP``.
"""
from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import os
import secrets
import sys
import time
import typing as t
import urllib.parse

from . import directory, oidc
from .accounts import Authenticator, StoreUnavailable, StoreView
from .audit import AuditLog, client_address
from .events import EnvelopeError, audit_record, parse_envelope
from .grants import ANONYMOUS, Identity
from .keys import TokenSigner, load_signing_key
from .limits import ACCOUNT, ADDRESS, PAIR, FailureLimiter, Policy
from .metrics import MULTIPROC_ENV, Metrics
from .scopes import CredentialsError, RequestError, parse_basic, parse_scopes

TOKEN_PATH = "/auth/token"
HEALTH_PATH = "/healthz"
EVENTS_PATH = "/events"
METRICS_PATH = "/metrics"
EVENTS_MEDIA_TYPES = ("application/vnd.docker.distribution.events.v1+json", "application/json")
MAX_EVENTS_BODY = 1024 * 1024
MIN_EVENTS_SECRET = 16
MAX_QUERY_LENGTH = 16384
MAX_QUERY_FIELDS = 64
MAX_CACHED_QUERY = 2048
DEFAULT_POLICY = Policy()
REFUSAL_MESSAGES = {
    PAIR: "too many failed logins for this account from this address",
    ACCOUNT: "too many failed logins for this account",
    ADDRESS: "too many failed logins from this address",
}


class Config(t.NamedTuple):
    issuer: str
    service: str
    key: str
    certificate: str
    store: str = "/etc/dockyard/token/accounts.json"
    lifetime: int = 300
    cache_ttl: int = 60
    cache_size: int = 4096
    audit_log: str = ""
    audit_stdout: bool = True
    # The node's name in every audit line ("": the host name).
    node: str = ""
    x5c: bool = False
    events_secret_file: str = ""
    events_listen: str = ""
    # Failed logins (limits.py): where the workers share their counters ("" keeps them in
    # the process), and the policy.
    limits_dir: str = ""
    limit_pair_failures: int = DEFAULT_POLICY.pair_failures
    limit_account_failures: int = DEFAULT_POLICY.account_failures
    limit_address_accounts: int = DEFAULT_POLICY.address_accounts
    limit_delay: int = DEFAULT_POLICY.delay
    limit_max_delay: int = DEFAULT_POLICY.max_delay
    limit_window: int = DEFAULT_POLICY.window
    # Directory users (directory.py): the settings, and the file with the service account's password.
    ldap: t.Optional[dict] = None
    ldap_bind_password_file: str = ""
    # Workload identity (oidc.py): the trusted issuers, and the account name jobs log in with.
    oidc_issuers: tuple = ()
    oidc_user: str = oidc.DEFAULT_USER
    # GET /metrics (metrics.py); the multiprocess directory comes from $PROMETHEUS_MULTIPROC_DIR.
    metrics: bool = False

    @classmethod
    def from_file(cls, path: str) -> "Config":
        with open(path, encoding="utf-8") as handle:
            data = {key: value for key, value in json.load(handle).items() if not key.startswith("_")}
        unknown = set(data) - set(cls._fields)
        if unknown:
            raise ValueError("%s: unknown settings %s" % (path, ", ".join(sorted(unknown))))
        config = cls(**data)
        if not isinstance(config.oidc_issuers, (list, tuple)):
            raise ValueError("%s: oidc_issuers must be a list" % path)
        config = config._replace(oidc_issuers=tuple(config.oidc_issuers))
        if not isinstance(config.metrics, bool):
            raise ValueError("%s: metrics must be true or false" % path)
        if not 30 <= int(config.lifetime) <= 86400:
            raise ValueError("%s: lifetime must be 30-86400 seconds" % path)
        if config.events_listen:
            parse_listen(config.events_listen)
        try:
            config.policy().check()
        except ValueError as exc:
            raise ValueError("%s: %s" % (path, exc)) from None
        return config

    def policy(self) -> Policy:
        return Policy(self.limit_pair_failures, self.limit_account_failures, self.limit_address_accounts,
                      self.limit_delay, self.limit_max_delay, self.limit_window)


def identity_providers(config: Config) -> tuple:
    """(Directory or None, Federation or None) of the configuration; ValueError when a setting is wrong."""
    found = None
    if config.ldap:
        password = read_secret(config.ldap_bind_password_file, 1) if config.ldap_bind_password_file else b""
        found = directory.Directory(config.ldap, password.decode("utf-8"))
    federation = oidc.Federation(config.oidc_issuers, config.oidc_user) if config.oidc_issuers else None
    return found, federation


def check_config(path: str) -> str:
    """The whole configuration checked as the service would at start, without the network;
    "" when it is usable, else what is wrong (the role runs this before it installs a file)."""
    try:
        config = Config.from_file(path)
        identity_providers(config)
    except (OSError, TypeError, ValueError) as exc:
        return "%s: %s" % (path, exc)
    return ""


def parse_listen(value: str) -> tuple:
    """``IPv4:PORT`` or ``[IPv6]:PORT`` (the events listener) as (ip_address, port)."""
    host, _sep, port = value.rpartition(":")
    try:
        address = ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        number = int(port)
    except ValueError:
        raise ValueError("events_listen must be IPv4:PORT or [IPv6]:PORT, not %r" % value) from None
    if not 0 < number < 65536 or (address.version == 6) != host.startswith("["):
        raise ValueError("events_listen must be IPv4:PORT or [IPv6]:PORT, not %r" % value)
    return address, number


def read_secret(path: str, minimum: int = MIN_EVENTS_SECRET) -> bytes:
    """A secret from a file: the events secret the registry sends as ``Authorization: Bearer
    SECRET``, or the directory's service account password."""
    try:
        with open(path, "rb") as handle:
            secret = handle.read(4096).strip()
    except OSError as exc:
        raise ValueError("cannot read the secret file: %s" % exc) from None
    if len(secret) < minimum:
        raise ValueError("%s: the secret must have at least %d characters" % (path, minimum))
    return secret


def parse_query(query: str) -> tuple:
    """``(services or None, scopes, scope strings, account or None)`` of a token request; RequestError."""
    if len(query) > MAX_QUERY_LENGTH:
        raise RequestError("query string too long")
    try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise RequestError("too many query parameters") from None
    scopes = tuple(parse_scopes(params.get("scope", [])))
    services = tuple(params["service"]) if "service" in params else None
    return services, scopes, tuple(str(scope) for scope in scopes), params.get("account", [None])[-1]


# Clients ask the same few queries again and again; only valid ones are remembered.
parse_query_cached = functools.lru_cache(maxsize=1024)(parse_query)


def _json(status: str, body: dict, extra: t.Iterable = ()) -> tuple:
    payload = json.dumps(body).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
               ("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    headers.extend(extra)
    return status, headers, payload


def _error(status: str, code: str, message: str, extra: t.Iterable = ()) -> tuple:
    return _json(status, {"errors": [{"code": code, "message": message}]}, extra)


class _Refused(Exception):
    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class TokenService:
    def __init__(self, config: Config, audit: t.Optional[AuditLog] = None) -> None:
        self.config = config
        self.key = load_signing_key(config.key, config.certificate)
        self.metrics = Metrics(os.environ.get(MULTIPROC_ENV, "")) if config.metrics else None
        self.store = StoreView(config.store, self.metrics.store_reloaded if self.metrics else None)
        self.authenticator = Authenticator(ttl=config.cache_ttl, size=config.cache_size)
        self.audit = audit or AuditLog(config.audit_log or None, config.audit_stdout, node=config.node)
        self.signer = TokenSigner(self.key, config.x5c)
        self.limiter = FailureLimiter(config.policy(), config.limits_dir)
        self.events_secret = read_secret(config.events_secret_file) if config.events_secret_file else None
        self.events_address = parse_listen(config.events_listen) if config.events_listen else None
        self.directory, self.federation = identity_providers(config)

    def __call__(self, environ: dict, start_response: t.Callable) -> list:
        try:
            status, headers, body = self.dispatch(environ)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # Last resort: a bug must not leak a traceback to clients or kill the worker.
            self.audit.write({"result": "error", "error": "%s: %s" % (type(exc).__name__, exc)[:300],
                              "client_ip": client_address(environ)})
            status, headers, body = _error("500 Internal Server Error", "UNKNOWN", "internal error")
        start_response(status, headers)
        return [body]

    def dispatch(self, environ: dict) -> tuple:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH:
            return _json("200 OK", {"status": "ok"})
        if path == EVENTS_PATH and self.events_secret is not None:
            if method != "POST":
                return _error("405 Method Not Allowed", "UNSUPPORTED", "use POST", [("Allow", "POST")])
            return self.events(environ)
        if path not in (TOKEN_PATH, METRICS_PATH) or self.on_events_listener(environ):
            return _error("404 Not Found", "NOT_FOUND", "not found")
        if path == METRICS_PATH:
            return self.exposition(method)
        if method != "GET":
            return _error("405 Method Not Allowed", "UNSUPPORTED", "use GET", [("Allow", "GET")])
        return self.token(environ)

    def exposition(self, method: str) -> tuple:
        if self.metrics is None:
            return _error("404 Not Found", "NOT_FOUND", "not found")
        if method != "GET":
            return _error("405 Method Not Allowed", "UNSUPPORTED", "use GET", [("Allow", "GET")])
        content_type, payload = self.metrics.exposition()
        return "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(payload))),
                          ("Cache-Control", "no-store")], payload

    def on_events_listener(self, environ: dict) -> bool:
        sock = environ.get("gunicorn.socket")
        if self.events_address is None or sock is None:
            return False
        try:
            local = sock.getsockname()
            return isinstance(local, tuple) and (ipaddress.ip_address(local[0]), local[1]) == self.events_address
        except (OSError, ValueError):
            return True

    def events(self, environ: dict) -> tuple:
        """Distribution's notification envelope: one audit line per event, 200 once written."""
        rejected = {"event": "notification", "client_ip": environ.get("REMOTE_ADDR") or "unknown"}
        scheme, _sep, given = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        # Compared even when the scheme is wrong, so the time taken tells nothing.
        authorized = hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), self.events_secret)
        if not (authorized and scheme.lower() == "bearer"):
            self.audit.write(dict(rejected, result="unauthorized", reason="wrong or missing secret"))
            return _error("401 Unauthorized", "UNAUTHORIZED", "authentication required",
                          [("WWW-Authenticate", 'Bearer realm="dockyard-events"')])
        try:
            body = self._events_body(environ)
            events = parse_envelope(body)
        except _Refused as exc:
            self.audit.write(dict(rejected, result="bad_request", reason=exc.message))
            return _error(exc.status, exc.code, exc.message)
        except EnvelopeError as exc:
            self.audit.write(dict(rejected, result="bad_request", reason=str(exc)))
            return _error("400 Bad Request", "INVALID_REQUEST", str(exc))
        for event in events:
            self.audit.write(audit_record(event))
        return _json("200 OK", {"accepted": len(events)})

    @staticmethod
    def _events_body(environ: dict) -> bytes:
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media_type not in EVENTS_MEDIA_TYPES:
            raise _Refused("415 Unsupported Media Type", "UNSUPPORTED", "send %s" % EVENTS_MEDIA_TYPES[0])
        length = environ.get("CONTENT_LENGTH", "")
        if length:
            if not (length.isascii() and length.isdigit()):
                raise _Refused("400 Bad Request", "INVALID_REQUEST", "bad Content-Length")
            if len(length) > 9 or int(length) > MAX_EVENTS_BODY:
                raise _Refused("413 Content Too Large", "TOO_LARGE", "body over %d bytes" % MAX_EVENTS_BODY)
        stream = environ.get("wsgi.input")
        body = stream.read(int(length) if length else MAX_EVENTS_BODY + 1) if stream is not None else b""
        if len(body) > MAX_EVENTS_BODY:
            raise _Refused("413 Content Too Large", "TOO_LARGE", "body over %d bytes" % MAX_EVENTS_BODY)
        return body

    def token(self, environ: dict) -> tuple:
        started = time.monotonic()
        record: dict = {"client_ip": client_address(environ), "subject": None, "requested": [], "granted": []}
        status = "500"  # an exception: __call__ answers 500
        try:
            status, headers, body = self._token(environ, record)
        finally:
            elapsed = time.monotonic() - started
            record["ms"] = round(elapsed * 1000, 2)
            self.audit.write(record)
            if self.metrics is not None:
                self.metrics.observe(int(status[:3]), record, elapsed)
        return status, headers, body

    def _token(self, environ: dict, record: dict) -> tuple:
        query = environ.get("QUERY_STRING", "")
        try:
            services, scopes, requested, account = (parse_query_cached if len(query) <= MAX_CACHED_QUERY
                                                    else parse_query)(query)
            if services is not None and services != (self.config.service,):
                raise RequestError("unknown service")
        except RequestError as exc:
            record.update(result="bad_request", reason=str(exc))
            return _error("400 Bad Request", "INVALID_REQUEST", str(exc))
        record["requested"] = list(requested)

        challenge = [("WWW-Authenticate", 'Basic realm="%s"' % self.config.service.replace('"', ""))]
        try:
            credentials = parse_basic(environ.get("HTTP_AUTHORIZATION"))
        except CredentialsError as exc:
            record.update(result="unauthorized", reason=str(exc))
            return _error("401 Unauthorized", "UNAUTHORIZED", str(exc), challenge)
        if credentials and account and account != credentials[0]:
            record.update(result="bad_request", reason="account does not match the credentials")
            return _error("400 Bad Request", "INVALID_REQUEST", "account does not match the credentials")

        workload = credentials is not None and self.federation is not None and credentials[0] == self.federation.user
        if credentials and not workload:
            # Before the store and the password: a refused guess costs one stat() and learns nothing.
            # (Identity tokens cannot be guessed: a workload's refusals are not counted.)
            refusal = self.limiter.refusal(record["client_ip"], credentials[0])
            if refusal is not None:
                return self._refuse(record, credentials[0], refusal)

        try:
            index = self.store.current()
        except StoreUnavailable as exc:
            record.update(result="error", reason=str(exc))
            return _error("503 Service Unavailable", "UNAVAILABLE", "account store unavailable")
        identity = ANONYMOUS
        if credentials:
            record["account"] = credentials[0][:128]
            try:
                found, cached, reason = self._authenticate(index, workload, credentials, record)
            except (directory.Unavailable, oidc.Unavailable) as exc:
                record.update(result="error", reason=str(exc)[:300])
                return _error("503 Service Unavailable", "UNAVAILABLE", "%s unavailable" % record["source"])
            record["cached"] = cached
            if found is None and workload:
                record.update(result="unauthorized", reason=reason)
                return _error("401 Unauthorized", "UNAUTHORIZED", "authentication required", challenge)
            if found is None:
                record.update(result="unauthorized", reason=reason)
                counts, started = self.limiter.failed(record["client_ip"], credentials[0])
                if counts:
                    record["failures"] = counts
                if started:
                    longest = max(started, key=lambda refusal: refusal.until)
                    record["refusal"] = {"scope": longest.scope, "seconds": longest.retry_after(self.limiter.clock())}
                return _error("401 Unauthorized", "UNAUTHORIZED", "authentication required", challenge)
            identity = found
        record["subject"] = identity.subject

        access = index.grant(identity, scopes)
        now = int(time.time())
        claims = {
            "iss": self.config.issuer, "sub": identity.name, "aud": self.config.service,
            "exp": now + self.config.lifetime, "nbf": now, "iat": now,
            "jti": secrets.token_urlsafe(16), "access": access,
        }
        token = self.signer.sign(claims)
        record.update(result="issued", jti=claims["jti"],
                      granted=["%s:%s:%s" % (item["type"], item["name"], ",".join(item["actions"])) for item in access])
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return _json("200 OK", {"token": token, "access_token": token,
                                "expires_in": self.config.lifetime, "issued_at": issued_at})

    def _authenticate(self, index: t.Any, workload: bool, credentials: tuple, record: dict) -> tuple:
        """(Identity or None, from_cache, reason) from the account store, the directory or an
        OIDC issuer; record["source"] says which. Local accounts shadow directory ones, whatever
        the case of the name (directory names are case-insensitive; a directory user is known by
        the lower-case name)."""
        account, password = credentials
        if workload:
            record["source"] = "oidc"
            try:
                name, permissions = self.federation.authenticate(password, record)
            except oidc.Refused as exc:
                return None, False, str(exc)
            return Identity("workload", name, (), permissions), False, ""
        folded = account.lower()
        if self.directory is None or folded.startswith("robot$") or folded in index.store["users"]:
            record["source"] = "local"
            return self.authenticator.authenticate(index, account, password)
        record["source"] = "ldap"
        groups, cached, reason = self.directory.authenticate(account, password)
        if groups is None:
            return None, cached, reason
        record["groups"] = list(groups)
        return Identity("user", folded, groups), cached, ""

    def _refuse(self, record: dict, account: str, refusal: t.Any) -> tuple:
        """429 in the registry's error format, with Retry-After; the audit line says why."""
        retry_after = refusal.retry_after(self.limiter.clock())
        message = REFUSAL_MESSAGES[refusal.scope]
        record.update(result="refused", account=account[:128], reason=message,
                      refusal={"scope": refusal.scope, "failures": refusal.failures, "seconds": retry_after})
        body = {"errors": [{"code": "TOOMANYREQUESTS", "message": message,
                            "detail": {"scope": refusal.scope, "retry_after": retry_after}}]}
        return _json("429 Too Many Requests", body, [("Retry-After", str(retry_after))])


def create_app(config_path: str) -> TokenService:
    return TokenService(Config.from_file(config_path))


if __name__ == "__main__":
    # python3 -m dockyard_token.app CONFIG: check a configuration file (exit 1 and say why).
    PROBLEM = check_config(sys.argv[1]) if len(sys.argv) == 2 else "usage: python3 -m dockyard_token.app CONFIG"
    print(PROBLEM or "%s: usable" % sys.argv[1], file=sys.stderr if PROBLEM else sys.stdout)
    sys.exit(1 if PROBLEM else 0)
