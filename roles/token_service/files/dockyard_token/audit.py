# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One JSON line per token decision and per registry event, to stdout (the journal) and/or
an append-only file.

Every line starts with ``time`` (UTC, RFC 3339 with milliseconds), ``event`` and ``node``
(the name of the node that wrote it: the service's ``node`` setting, else the host name).
Token lines (docs/token-auth.md): ``event`` ("token"), ``result`` (issued | unauthorized | refused | bad_request | error), ``subject``
(anonymous, user:NAME, robot:NAME; null when unauthenticated), ``account`` (the name
presented, if any), ``client_ip``, ``requested`` and ``granted`` (scope strings),
``reason``, ``cached`` (credentials from the cache), ``failures`` and ``refusal`` (the
failed-login limits, limits.py), ``jti``, ``ms``. Registry events
(``event``: "registry") are built in events.py; refused notifications are ``event``:
"notification" with a ``result`` and ``reason``.
"""
from __future__ import annotations

import functools
import ipaddress
import time
import json
import os
import socket
import sys
import typing as t


def client_address(environ: dict) -> str:
    """The client as nginx saw it: X-Real-IP, else the last X-Forwarded-For hop, else the peer.

    Only the last X-Forwarded-For entry is the one nginx appended itself; earlier ones
    come from the client and prove nothing.
    """
    candidates = [environ.get("HTTP_X_REAL_IP", "")]
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        candidates.append(forwarded[-100:].rsplit(",", 1)[-1])
    candidates.append(environ.get("REMOTE_ADDR", ""))
    for candidate in candidates:
        candidate = candidate.strip()[:64]
        if candidate:
            return _canonical_address(candidate)
    return "unknown"


@functools.lru_cache(maxsize=4096)
def _canonical_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return "invalid"


def timestamp(now: float) -> str:
    """UTC, RFC 3339 with milliseconds: 2026-11-28T19:33:07.310Z."""
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % int((now - seconds) * 1000)


class AuditLog:
    def __init__(self, path: t.Optional[str] = None, stdout: bool = True,
                 stream: t.Optional[t.TextIO] = None, node: str = "") -> None:
        self.path = path
        self.node = node or socket.gethostname()
        self.stdout = stdout
        self.stream = stream

    def write(self, record: dict) -> None:
        line = json.dumps(dict({"time": timestamp(time.time()), "event": "token", "node": self.node}, **record),
                          sort_keys=False, default=str) + "\n"
        if self.stdout:
            stream = self.stream or sys.stdout
            stream.write(line)
            stream.flush()
        if self.path:
            # Opened per line with O_APPEND: one write() per line keeps lines whole across
            # workers, and logrotate needs neither copytruncate nor a signal.
            # A full or unwritable disk must not refuse tokens: the line is in the journal.
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode("utf-8"))
                finally:
                    os.close(fd)
            except OSError as error:
                sys.stderr.write(f"dockyard-token: audit log {self.path} not written: {error}\n")
                sys.stderr.flush()
