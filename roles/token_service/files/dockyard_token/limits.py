# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Limits on failed logins: password guessing gets slow, accounts that authenticate never wait.

Only failures count. Three counters are kept (docs/token-auth.md, "Failed logins"):

* per address and account: ``pair_failures`` failures refuse that account from that address;
* per account, from any address: ``account_failures`` failures refuse the account everywhere
  (a guesser spread over many addresses);
* per address, over accounts: failures on ``address_accounts`` distinct accounts refuse every
  login from that address (one address trying many accounts).

The first refusal lasts ``delay`` seconds; each further failure once a threshold is reached
doubles it, up to ``max_delay``. A counter is forgotten ``window`` seconds after its last
failure or refusal ended. A refused attempt is answered before its password is checked and
is not counted: it costs the service one stat() and tells the client nothing.

The state is shared by every gunicorn worker through two small files in ``directory``
(the service's RuntimeDirectory, so it is reset when the service restarts):
``failures.json`` holds the counters and is read and written only by a failure, under an
exclusive flock; ``refusals.json`` holds the refusals in force, replaced atomically when one
starts, and is what every login checks: one stat(), re-read only when it changed. A success
takes no lock and writes nothing. Without a directory the state lives in the process (tests).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import math
import os
import sys
import tempfile
import time
import typing as t

PAIR, ACCOUNT, ADDRESS = "address+account", "account", "address"
SCOPES = (PAIR, ACCOUNT, ADDRESS)
COUNTERS_FILE = "failures.json"
REFUSALS_FILE = "refusals.json"
MAX_RECORDS = 10000  # per kind of counter; the oldest are dropped beyond it
MAX_ACCOUNT_LENGTH = 128


class Policy(t.NamedTuple):
    """Thresholds (0 turns one off) and times in seconds."""
    pair_failures: int = 10
    account_failures: int = 100
    address_accounts: int = 20
    delay: int = 30
    max_delay: int = 900
    window: int = 900

    def check(self) -> "Policy":
        for name in ("pair_failures", "account_failures", "address_accounts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000000:
                raise ValueError("%s must be an integer 0-1000000 (0: off), not %r" % (name, value))
        for name in ("delay", "max_delay", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 604800:
                raise ValueError("%s must be 1-604800 seconds, not %r" % (name, value))
        if self.max_delay < self.delay:
            raise ValueError("max_delay (%d) must not be shorter than delay (%d)" % (self.max_delay, self.delay))
        return self

    def threshold(self, scope: str) -> int:
        return {PAIR: self.pair_failures, ACCOUNT: self.account_failures, ADDRESS: self.address_accounts}[scope]


class Refusal(t.NamedTuple):
    scope: str          # PAIR, ACCOUNT or ADDRESS
    until: float        # epoch seconds
    failures: int       # the counter that caused it (distinct accounts for ADDRESS)

    def retry_after(self, now: float) -> int:
        return max(1, int(math.ceil(self.until - now)))


def address_key(address: str) -> str:
    """IPv6 clients are counted per /64 (one host usually holds the whole /64)."""
    if ":" in address:
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
    return address


def keys(address: str, account: str) -> dict:
    """The state's key of each counter, by scope."""
    where = address_key(address)
    account = account[:MAX_ACCOUNT_LENGTH]
    return {PAIR: "%s\t%s" % (where, account), ACCOUNT: account, ADDRESS: where}


def _member(account: str) -> str:
    return hashlib.sha256(account[:MAX_ACCOUNT_LENGTH].encode("utf-8", "surrogatepass")).hexdigest()[:16]


def forgotten(record: dict, now: float, policy: Policy) -> bool:
    return now >= max(record["last"], record["until"]) + policy.window


def empty_state() -> dict:
    return {scope: {} for scope in SCOPES}


def record_failure(state: dict, policy: Policy, now: float, address: str, account: str) -> tuple:
    """Count one failure in ``state`` (changed in place); pure but for that.

    Returns ``(counts, started)``: the counters after this failure by scope, and the
    refusals this failure started or extended.
    """
    counts: dict = {}
    started: list = []
    for scope, key in keys(address, account).items():
        records = state[scope]
        record = records.get(key)
        if record is None or forgotten(record, now, policy):
            record = {"n": 0, "over": 0, "last": now, "until": 0}
        record["n"] += 1
        record["last"] = now
        if scope == ADDRESS:
            members = record.setdefault("m", [])
            member = _member(account)
            if member not in members and len(members) < max(policy.address_accounts, 1):
                members.append(member)
            count = len(members)
        else:
            count = record["n"]
        threshold = policy.threshold(scope)
        if threshold and count >= threshold:
            record["over"] += 1
            delay = min(policy.delay * 2 ** min(record["over"] - 1, 32), policy.max_delay)
            record["until"] = max(record["until"], now + delay)
            started.append(Refusal(scope, record["until"], count))
        records.pop(key, None)  # re-inserted last: dicts keep the most recent at the end
        records[key] = record
        counts[scope] = count
    return counts, started


def prune(state: dict, policy: Policy, now: float) -> None:
    for scope in SCOPES:
        records = state[scope]
        for key in [key for key, record in records.items() if forgotten(record, now, policy)]:
            del records[key]
        while len(records) > MAX_RECORDS:
            del records[next(iter(records))]


def refusals_in_force(state: dict, now: float) -> dict:
    """``{scope: {key: [until, count]}}`` of the refusals that have not ended."""
    result: dict = {}
    for scope in SCOPES:
        active = {key: [record["until"], len(record["m"]) if "m" in record else record["n"]]
                  for key, record in state[scope].items() if record["until"] > now}
        if active:
            result[scope] = active
    return result


def find_refusal(refusals: dict, now: float, address: str, account: str) -> t.Optional[Refusal]:
    """The longest refusal in force for this address and account, if any."""
    if not refusals:
        return None
    found = None
    for scope, key in keys(address, account).items():
        entry = refusals.get(scope, {}).get(key)
        if entry is not None and entry[0] > now and (found is None or entry[0] > found.until):
            found = Refusal(scope, entry[0], entry[1])
    return found


class FailureLimiter:
    """The policy applied with state shared by the workers (see the module's docstring)."""

    def __init__(self, policy: Policy, directory: str = "", clock: t.Callable[[], float] = time.time) -> None:
        self.policy = policy.check()
        self.directory = directory
        self.clock = clock
        self._memory = empty_state()
        self._refusals: dict = {}
        self._stamp: t.Optional[tuple] = None
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._counters_path = os.path.join(directory, COUNTERS_FILE)
            self._refusals_path = os.path.join(directory, REFUSALS_FILE)

    @property
    def enabled(self) -> bool:
        return bool(self.policy.pair_failures or self.policy.account_failures or self.policy.address_accounts)

    def refusal(self, address: str, account: str) -> t.Optional[Refusal]:
        """Is this login refused now? One stat() (a re-read when the refusals changed), no lock."""
        if not self.enabled:
            return None
        if self.directory:
            self._refresh()
        return find_refusal(self._refusals, self.clock(), address, account)

    def _refresh(self) -> None:
        try:
            info = os.stat(self._refusals_path)
        except FileNotFoundError:
            self._stamp, self._refusals = None, {}
            return
        except OSError:
            return  # keep what we had: never refuse or allow on a guess
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                with open(self._refusals_path, "rb") as handle:
                    refusals = json.loads(handle.read())
            except (OSError, ValueError):
                return
            self._stamp, self._refusals = stamp, refusals if isinstance(refusals, dict) else {}

    def failed(self, address: str, account: str) -> tuple:
        """Count a failed login; ``(counts, started)`` as record_failure, ``({}, [])`` when off
        or when the state cannot be written (then the failure is not counted; see the docs)."""
        if not self.enabled:
            return {}, []
        now = self.clock()
        if not self.directory:
            counts, started = record_failure(self._memory, self.policy, now, address, account)
            prune(self._memory, self.policy, now)
            self._refusals = refusals_in_force(self._memory, now)
            return counts, started
        try:
            return self._failed_shared(now, address, account)
        except OSError as exc:
            sys.stderr.write("dockyard-token: failed-login state in %s not written: %s\n" % (self.directory, exc))
            sys.stderr.flush()
            return {}, []

    def _failed_shared(self, now: float, address: str, account: str) -> tuple:
        fd = os.open(self._counters_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                raw += chunk
            try:
                state = json.loads(raw) if raw else empty_state()
                if not isinstance(state, dict) or set(state) != set(SCOPES):
                    state = empty_state()
            except ValueError:
                state = empty_state()
            before = refusals_in_force(state, now)
            counts, started = record_failure(state, self.policy, now, address, account)
            prune(state, self.policy, now)
            data = json.dumps(state, separators=(",", ":")).encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            refusals = refusals_in_force(state, now)
            if refusals != before or started:
                self._publish(refusals)
            return counts, started
        finally:
            os.close(fd)  # releases the flock

    def _publish(self, refusals: dict) -> None:
        handle, temp = tempfile.mkstemp(prefix=".refusals.", dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(json.dumps(refusals, separators=(",", ":")).encode("utf-8"))
            os.replace(temp, self._refusals_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
