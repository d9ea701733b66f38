# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distribution's notifications (``POST /events``) turned into audit lines.

An envelope is ``{"events": [...]}`` (docs: distribution/docs/notifications.md). The
envelope must be well-formed or nothing is written (400); inside an event every field
is optional and a field of the wrong type is written as null, because the registry
retries a refused envelope forever and would stall its queue on one odd event.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import re
import typing as t

MAX_EVENTS = 1000
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")


class EnvelopeError(ValueError):
    """The body is not a notification envelope."""


def parse_envelope(body: bytes) -> list:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise EnvelopeError("body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
        raise EnvelopeError("body is not an object with an events list")
    events = envelope["events"]
    if len(events) > MAX_EVENTS:
        raise EnvelopeError("more than %d events" % MAX_EVENTS)
    if not all(isinstance(event, dict) for event in events):
        raise EnvelopeError("an event is not an object")
    return events


def _text(value: t.Any, limit: int) -> t.Optional[str]:
    return value[:limit] if isinstance(value, str) else None


def _section(event: dict, name: str) -> dict:
    value = event.get(name)
    return value if isinstance(value, dict) else {}


def event_time(value: t.Any) -> t.Optional[str]:
    """RFC 3339 (Go's RFC3339Nano, any zone) as UTC with milliseconds; None if unusable."""
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if not match:
        return None
    base, fraction, zone = match.groups()
    try:
        moment = datetime.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
        moment = moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        return None
    milliseconds = int((fraction or "0").ljust(3, "0")[:3])
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % milliseconds


def address_without_port(value: t.Any) -> t.Optional[str]:
    """``request.addr`` is ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; "invalid" if it holds no IP."""
    if not isinstance(value, str) or not value:
        return None
    value = value.strip()[:64]
    candidates = [value]
    if value.startswith("["):
        candidates = [value[1:].split("]", 1)[0]]
    elif value.count(":") == 1:
        candidates = [value.rsplit(":", 1)[0]]
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return "invalid"


def audit_record(event: dict) -> dict:
    """The audit line of one event (``event: registry``); see docs/token-auth.md."""
    target, request, actor = _section(event, "target"), _section(event, "request"), _section(event, "actor")
    size = target.get("size")
    record = {
        "event": "registry",
        "action": _text(event.get("action"), 16),
        "repository": _text(target.get("repository"), 256),
        "tag": _text(target.get("tag"), 128),
        "digest": _text(target.get("digest"), 160),
        "media_type": _text(target.get("mediaType"), 128),
        "size": size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2 ** 63 else None,
        "actor": _text(actor.get("name"), 128),
        "client_ip": address_without_port(request.get("addr")),
        "request_id": _text(request.get("id"), 64),
        "user_agent": _text(request.get("useragent"), 256),
        "id": _text(event.get("id"), 64),
    }
    if isinstance(target.get("fromRepository"), str):
        record["from_repository"] = target["fromRepository"][:256]
    when = event_time(event.get("timestamp"))
    if when:
        record = dict({"time": when}, **record)
    return record
