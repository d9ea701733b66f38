# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metrics of the token service (docs/token-auth.md, "Metrics").

Debian's ``python3-prometheus-client`` in multiprocess mode: every gunicorn worker writes its
values into its own memory-mapped files in ``$PROMETHEUS_MULTIPROC_DIR`` (under the service's
RuntimeDirectory, so empty at every start), and ``GET /metrics`` on whichever worker answers
sums them all. The library decides the mode when it is imported, from that variable; without
it (tests, a single process) the values live in the process.

Label values come from fixed vocabularies only (RESULTS, REASONS): never a name, a repository
or an error text, so the number of series stays bounded whatever clients send.
"""
from __future__ import annotations

import os
import time
import typing as t

ISSUED, REFUSED, ERROR = "issued", "refused", "error"
RESULTS = (ISSUED, REFUSED, ERROR)
# The reasons each result can have (the audit line keeps the long text).
REASONS = {
    ISSUED: ("ok",),
    REFUSED: ("bad_request", "bad_credentials", "disabled", "expired", "oidc_refused", "rate_limited"),
    ERROR: ("store_unavailable", "directory_unavailable", "oidc_unavailable", "internal"),
}
# Authenticator's reasons (accounts.py) that are not simply wrong credentials.
_DISABLED = frozenset(("user disabled", "robot account disabled"))
_EXPIRED = frozenset(("robot account expired",))
_UNAVAILABLE = {"ldap": "directory_unavailable", "oidc": "oidc_unavailable"}
# Token requests take from a cached check (well under 10 ms) to a directory's timeout (5 s).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def classify(status: int, record: dict) -> tuple:
    """(result, reason) of a token request from its HTTP status and its audit record."""
    if status < 300:
        return ISSUED, "ok"
    if status == 429:
        return REFUSED, "rate_limited"
    if status < 500:
        if status != 401:
            return REFUSED, "bad_request"
        if record.get("source") == "oidc":
            return REFUSED, "oidc_refused"
        reason = record.get("reason")
        return REFUSED, "disabled" if reason in _DISABLED else "expired" if reason in _EXPIRED else "bad_credentials"
    if status == 503:
        return ERROR, _UNAVAILABLE.get(record.get("source", ""), "store_unavailable")
    return ERROR, "internal"


class Metrics:
    """The service's metric families. ``directory``: the multiprocess directory ("" in one
    process); it must be the library's own $PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self, directory: str = "") -> None:
        # Imported here: the role installs the library only when metrics are on.
        import prometheus_client  # pylint: disable=import-outside-toplevel
        from prometheus_client import values  # pylint: disable=import-outside-toplevel

        self._client = prometheus_client
        self.directory = directory
        if directory:
            if not getattr(values.ValueClass, "_multiprocess", False) or os.environ.get(MULTIPROC_ENV) != directory:
                raise ValueError("metrics directory %s: set %s to it before the service starts" % (directory,
                                                                                                   MULTIPROC_ENV))
            os.makedirs(directory, mode=0o700, exist_ok=True)
        # Multiprocess: the values live in the files, the collector reads them at each scrape.
        self.registry = None if directory else prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "dockyard_token_requests", "Token requests by result and reason.", ["result", "reason"],
            registry=self.registry)
        self.duration = prometheus_client.Histogram(
            "dockyard_token_request_duration_seconds", "Time to answer a token request.", ["result"],
            buckets=BUCKETS, registry=self.registry)
        self.reloads = prometheus_client.Counter(
            "dockyard_token_account_store_reloads", "Reads of the account store after it changed, per worker.",
            ["result"], registry=self.registry)
        self.rate_limited = prometheus_client.Counter(
            "dockyard_token_rate_limited", "Logins refused by the failed-login limiter (429).",
            registry=self.registry)
        self.last_reload = prometheus_client.Gauge(
            "dockyard_token_account_store_last_reload_timestamp_seconds",
            "When a worker last read the account store successfully (Unix time).",
            registry=self.registry, multiprocess_mode="max")
        # Every series exists from the start, so rate() and absent() see zeros, not gaps; the
        # children are looked up once, not per request.
        self._requests = {(result, reason): self.requests.labels(result, reason)
                          for result, reasons in REASONS.items() for reason in reasons}
        self._durations = {result: self.duration.labels(result) for result in RESULTS}
        self._reloads = {ok: self.reloads.labels("ok" if ok else "failed") for ok in (True, False)}

    def observe(self, status: int, record: dict, seconds: float) -> None:
        result, reason = classify(status, record)
        self._requests[result, reason].inc()
        self._durations[result].observe(seconds)
        if reason == "rate_limited":
            self.rate_limited.inc()

    def store_reloaded(self, ok: bool) -> None:
        self._reloads[ok].inc()
        if ok:
            self.last_reload.set(time.time())

    def exposition(self) -> tuple:
        """(content type, body) of the text format: the sum over every worker in multiprocess mode."""
        registry: t.Any = self.registry
        if self.directory:
            from prometheus_client import multiprocess  # pylint: disable=import-outside-toplevel
            registry = self._client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, self.directory)
        return self._client.CONTENT_TYPE_LATEST, self._client.generate_latest(registry)
