# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Workload identity: a CI job's OIDC identity token, given as the password of one fixed
account, verified against a trusted issuer and mapped to repository permissions by claim rules.

Nothing is stored: the job's token is the credential, and the registry token it buys
carries exactly the actions of the rules whose claims all match (docs/identity.md).

Verification, in this order, each step with its own refusal reason (audited):
the issuer is one of the trusted ones (exact ``iss``); the header's ``alg`` is one the issuer
allows (RS256, ES256: ``none`` and every HMAC are never accepted, so a public key can never
be used as an HMAC secret); the ``kid`` names a key of the issuer's JWKS of the matching type;
the signature; ``aud``; ``exp``, ``nbf``, ``iat`` and the maximum token age; the rules.

Keys come from the issuer's discovery document (``jwks_uri``, https only) or a JWKS file.
Fetched keys are used for ``jwks_refresh`` seconds; a token with an unknown ``kid`` makes
one early refetch (at most every MIN_REFETCH seconds), so a new key works at once and a
removed key stops working at the next refresh. When a refresh fails, the last keys stay in
use for at most STALE_LIMIT seconds.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
import threading
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from . import _accounts

ALGORITHMS = ("RS256", "ES256")
KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
MIN_RSA_BITS = 2048
MAX_TOKEN_LENGTH = 8192
MAX_DOCUMENT = 1024 * 1024
MIN_REFETCH = 10.0
STALE_LIMIT = 86400.0
DEFAULT_USER = "oidc"
ISSUER_SETTINGS = {"name", "issuer", "audience", "algorithms", "max_age", "leeway", "jwks_uri", "jwks_file",
                   "ca_file", "jwks_refresh", "timeout", "rules"}
_CLAIM_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


class Refused(Exception):
    """The token is not accepted; the message is the audit line's reason."""


class Unavailable(Exception):
    """The issuer's keys cannot be had (network, TLS, bad document): fail closed."""


class Rule(t.NamedTuple):
    claims: tuple          # ((claim name, (allowed value patterns...)), ...)
    repository: str
    actions: frozenset

    def matches(self, payload: dict) -> bool:
        return all(_claim_matches(payload.get(name), patterns) for name, patterns in self.claims)

    def describe(self) -> dict:
        return {name: list(patterns) if len(patterns) > 1 else patterns[0] for name, patterns in self.claims}


def _claim_text(value: t.Any) -> t.Optional[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _claim_matches(value: t.Any, patterns: tuple) -> bool:
    """A claim matches when its value (or, for a list claim, one element) matches one pattern;
    ``*`` in a pattern is any run of characters. Booleans compare as "true"/"false"."""
    values = value if isinstance(value, list) else [value]
    texts = [text for text in (_claim_text(item) for item in values) if text is not None]
    return any(_accounts.match_pattern(pattern, text) for pattern in patterns for text in texts)


def _b64decode(part: str) -> bytes:
    if not isinstance(part, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", part):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64int(value: t.Any) -> int:
    return int.from_bytes(_b64decode(value), "big")


def public_key(jwk: dict) -> t.Any:
    """The public key of one JWK (RSA of 2048 bits or more, or EC P-256); ValueError otherwise."""
    kind = jwk.get("kty")
    if kind == "RSA":
        key = rsa.RSAPublicNumbers(_b64int(jwk.get("e")), _b64int(jwk.get("n"))).public_key()
        if key.key_size < MIN_RSA_BITS:
            raise ValueError("RSA key shorter than %d bits" % MIN_RSA_BITS)
        return key
    if kind == "EC" and jwk.get("crv") == "P-256":
        return ec.EllipticCurvePublicNumbers(_b64int(jwk.get("x")), _b64int(jwk.get("y")), ec.SECP256R1()).public_key()
    raise ValueError("unsupported key type %r" % kind)


def parse_jwks(document: t.Any) -> dict:
    """``{kid: (kty, alg or None, key)}`` of the usable signing keys; unusable ones are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise Unavailable("not a JWKS document (no keys list)")
    keys = {}
    for position, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = public_key(jwk)
        except (ValueError, TypeError, binascii.Error):
            continue
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else "#%d" % position
        keys[kid] = (jwk["kty"], jwk.get("alg"), key)
    return keys


def _verify_signature(alg: str, key: t.Any, signing_input: bytes, signature: bytes) -> bool:
    try:
        if alg == "RS256":
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            if len(signature) != 64:
                return False
            der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def split_token(token: str) -> tuple:
    """(header, payload, signing input, signature) of a compact JWS; Refused when malformed."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise Refused("token longer than %d characters" % MAX_TOKEN_LENGTH)
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused("not a signed JWT (three dot-separated parts)")
    try:
        header = json.loads(_b64decode(parts[0]))
        payload = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise Refused("malformed JWT") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise Refused("malformed JWT")
    return header, payload, (parts[0] + "." + parts[1]).encode("ascii"), signature


def _fetch_json(url: str, context: ssl.SSLContext, timeout: float) -> t.Any:
    if urllib.parse.urlsplit(url).scheme != "https":
        raise Unavailable("%s is not an https URL" % url)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # nosec B310 (https only)
            body = response.read(MAX_DOCUMENT + 1)
    except urllib.error.HTTPError as exc:
        raise Unavailable("%s answered %d" % (url, exc.code)) from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        raise Unavailable("cannot fetch %s: %s" % (url, getattr(exc, "reason", exc))) from None
    if len(body) > MAX_DOCUMENT:
        raise Unavailable("%s is larger than %d bytes" % (url, MAX_DOCUMENT))
    try:
        return json.loads(body)
    except ValueError:
        raise Unavailable("%s is not JSON" % url) from None


class KeySet:
    """The issuer's signing keys: from a JWKS file (re-read when it changes) or fetched."""

    def __init__(self, issuer: "Issuer", clock: t.Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.clock = clock
        self._keys: dict = {}
        self._fetched = -1.0        # when the keys in hand were fetched (-1: never)
        self._attempted = -1.0      # the last fetch attempt, successful or not
        self._file_stamp: t.Optional[tuple] = None
        self._error = ""
        self._lock = threading.Lock()

    def _load_file(self) -> dict:
        path = self.issuer.jwks_file
        try:
            info = os.stat(path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if stamp != self._file_stamp:
                with open(path, encoding="utf-8") as handle:
                    self._keys = parse_jwks(json.load(handle))
                self._file_stamp = stamp
        except (OSError, ValueError) as exc:
            raise Unavailable("cannot read the JWKS file %s: %s" % (path, exc)) from None
        return self._keys

    def _fetch(self) -> None:
        self._attempted = self.clock()
        jwks_uri = self.issuer.jwks_uri
        if not jwks_uri:
            discovery = _fetch_json(self.issuer.url.rstrip("/") + "/.well-known/openid-configuration",
                                    self.issuer.tls, self.issuer.timeout)
            if not isinstance(discovery, dict) or discovery.get("issuer") != self.issuer.url:
                raise Unavailable("the discovery document of %s names another issuer" % self.issuer.url)
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise Unavailable("the discovery document of %s has no jwks_uri" % self.issuer.url)
        self._keys = parse_jwks(_fetch_json(jwks_uri, self.issuer.tls, self.issuer.timeout))
        self._fetched = self._attempted

    def keys(self, kid: t.Optional[str]) -> dict:
        """The current keys; refreshed when old, or early (rate-limited) for an unknown kid."""
        if self.issuer.jwks_file:
            with self._lock:
                return self._load_file()
        with self._lock:
            now = self.clock()
            stale = self._fetched < 0 or now - self._fetched >= self.issuer.jwks_refresh
            unknown = kid is not None and kid not in self._keys
            may_retry = self._attempted < 0 or now - self._attempted >= MIN_REFETCH
            if (stale or unknown) and may_retry:
                try:
                    self._fetch()
                    self._error = ""
                except Unavailable as exc:
                    self._error = str(exc)
            if self._fetched < 0 or now - self._fetched >= STALE_LIMIT:
                raise Unavailable(self._error or "no keys of %s" % self.issuer.url)
            return self._keys


class Issuer:
    """One trusted issuer (settings validated here: a bad setting stops the service at start)."""

    def __init__(self, settings: dict) -> None:
        try:
            self._configure(settings)
        except _accounts.InvalidValue as exc:
            raise ValueError("OIDC issuer %s: %s" % (getattr(self, "name", "?"), exc)) from None
        self.keyset = KeySet(self)

    def _configure(self, settings: dict) -> None:
        if not isinstance(settings, dict):
            raise ValueError("each OIDC issuer is a mapping")
        unknown = set(settings) - ISSUER_SETTINGS
        if unknown:
            raise ValueError("OIDC issuer: unknown settings %s" % ", ".join(sorted(unknown)))
        self.name = _accounts.check_user_name(settings.get("name"), "OIDC issuer name")
        self.url = settings.get("issuer")
        split = urllib.parse.urlsplit(self.url if isinstance(self.url, str) else "")
        if split.scheme != "https" or not split.hostname or split.query or split.fragment:
            raise ValueError("OIDC issuer %s: issuer must be an https URL without query or fragment, not %r"
                             % (self.name, self.url))
        self.audience = settings.get("audience")
        if not isinstance(self.audience, str) or not self.audience:
            raise ValueError("OIDC issuer %s: audience must be a non-empty string" % self.name)
        algorithms = settings.get("algorithms", list(ALGORITHMS))
        if not isinstance(algorithms, list) or not algorithms or not set(algorithms) <= set(ALGORITHMS):
            raise ValueError("OIDC issuer %s: algorithms must be a non-empty list of %s (never none or HMAC)"
                             % (self.name, ", ".join(ALGORITHMS)))
        self.algorithms = frozenset(algorithms)
        self.max_age = self._seconds(settings, "max_age", 3600, 60, 86400)
        self.leeway = self._seconds(settings, "leeway", 30, 0, 300)
        self.jwks_refresh = self._seconds(settings, "jwks_refresh", 300, 1, 86400)
        self.timeout = self._seconds(settings, "timeout", 5, 1, 60)
        self.jwks_file = settings.get("jwks_file") or ""
        self.jwks_uri = settings.get("jwks_uri") or ""
        if self.jwks_uri and urllib.parse.urlsplit(self.jwks_uri).scheme != "https":
            raise ValueError("OIDC issuer %s: jwks_uri must be an https URL" % self.name)
        ca_file = settings.get("ca_file") or None
        self.tls = ssl.create_default_context(cafile=ca_file)
        self.rules = self._rules(settings.get("rules"))

    def _seconds(self, settings: dict, name: str, default: int, low: int, high: int) -> int:
        value = settings.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError("OIDC issuer %s: %s must be %d-%d seconds, not %r" % (self.name, name, low, high, value))
        return value

    def _rules(self, rules: t.Any) -> tuple:
        if not isinstance(rules, list) or not rules:
            raise ValueError("OIDC issuer %s: rules must be a non-empty list" % self.name)
        result = []
        for rule in rules:
            if not isinstance(rule, dict) or set(rule) != {"claims", "repository", "actions"}:
                raise ValueError("OIDC issuer %s: each rule is {claims, repository, actions}" % self.name)
            claims = rule["claims"]
            # A rule without claims would trust every workload of a shared issuer (all of GitHub).
            if not isinstance(claims, dict) or not claims:
                raise ValueError("OIDC issuer %s: every rule needs at least one claim to match" % self.name)
            matched = []
            for name, expected in sorted(claims.items()):
                patterns = expected if isinstance(expected, list) else [expected]
                patterns = [_claim_text(pattern) for pattern in patterns]
                if not _CLAIM_NAME_RE.match(str(name)) or not patterns or None in patterns:
                    raise ValueError("OIDC issuer %s: claim %r must map to a string or a list of strings"
                                     % (self.name, name))
                matched.append((name, tuple(patterns)))
            repository = _accounts.check_pattern(rule["repository"])
            actions = _accounts.check_actions(rule["actions"] if isinstance(rule["actions"], list) else [], repository)
            if not actions:
                raise ValueError("OIDC issuer %s: rule on %s needs actions" % (self.name, repository))
            result.append(Rule(tuple(matched), repository, frozenset(actions)))
        return tuple(result)

    def verify(self, header: dict, payload: dict, signing_input: bytes, signature: bytes, now: float) -> list:
        """The rules the token's claims match (at least one); Refused or Unavailable otherwise."""
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Refused("algorithm %r is not accepted from issuer %s" % (str(alg)[:16], self.name))
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = self.keyset.keys(kid)
        candidates = [keys[kid]] if kid in keys else ([] if kid is not None else list(keys.values()))
        candidates = [(kind, key) for kind, key_alg, key in candidates
                      if kind == KEY_TYPES[alg] and key_alg in (None, alg)]
        if not candidates:
            raise Refused("no key of issuer %s matches kid %r and %s" % (self.name, (kid or "")[:64], alg))
        if not any(_verify_signature(alg, key, signing_input, signature) for _kind, key in candidates):
            raise Refused("bad signature")
        audience = payload.get("aud")
        if not (audience == self.audience or (isinstance(audience, list) and self.audience in audience)):
            raise Refused("audience does not include %s" % self.audience)
        expires, not_before, issued = payload.get("exp"), payload.get("nbf", 0), payload.get("iat")
        if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (expires, not_before, issued)):
            raise Refused("exp and iat must be numbers")
        if now >= expires + self.leeway:
            raise Refused("token expired")
        if now + self.leeway < not_before or now + self.leeway < issued:
            raise Refused("token not valid yet")
        if now - issued > self.max_age:
            raise Refused("token older than %d s" % self.max_age)
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            raise Refused("token without a subject")
        matched = [rule for rule in self.rules if rule.matches(payload)]
        if not matched:
            raise Refused("no rule of issuer %s matches the token's claims" % self.name)
        return matched


class Federation:
    """The trusted issuers; ``authenticate`` turns an identity token into permissions."""

    def __init__(self, issuers: t.Iterable, user: str = DEFAULT_USER, clock: t.Callable[[], float] = time.time) -> None:
        self.issuers: dict = {}
        names = set()
        for settings in issuers:
            issuer = Issuer(settings)
            if issuer.url in self.issuers or issuer.name in names:
                raise ValueError("OIDC issuer %s: issuer names and URLs must be unique" % issuer.name)
            self.issuers[issuer.url] = issuer
            names.add(issuer.name)
        self.user = _accounts.check_user_name(user, "OIDC user name")
        self.clock = clock

    def authenticate(self, token: str, record: dict) -> tuple:
        """(name, permissions) for a valid token; fills the audit ``record``; Refused/Unavailable."""
        header, payload, signing_input, signature = split_token(token)
        issuer = self.issuers.get(payload.get("iss")) if isinstance(payload.get("iss"), str) else None
        if issuer is None:
            raise Refused("issuer %r is not trusted" % str(payload.get("iss"))[:128])
        record.update(issuer=issuer.name, sub=str(payload.get("sub"))[:256])
        matched = issuer.verify(header, payload, signing_input, signature, self.clock())
        record["matched"] = [rule.describe() for rule in matched]
        permissions = tuple((rule.repository, rule.actions) for rule in matched)
        return "%s:%s" % (issuer.name, payload["sub"][:256]), permissions
