# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live view of the account store and the (cached) check of credentials."""
from __future__ import annotations

import collections
import hmac
import os
import secrets
import threading
import time
import typing as t

from . import _accounts
from .grants import Identity, RuleIndex


class StoreUnavailable(Exception):
    """The store exists but cannot be read or is invalid: fail closed (503)."""


class StoreView:
    """Re-reads the store when its inode, mtime or size changes; costs one stat() per call.
    ``on_reload(ok)`` is called after each read (the metrics)."""

    def __init__(self, path: str, on_reload: t.Optional[t.Callable[[bool], None]] = None) -> None:
        self.path = path
        self.on_reload = on_reload
        self._stamp: t.Optional[tuple] = None
        self._index: t.Optional[RuleIndex] = None
        self._error: t.Optional[str] = None
        self._lock = threading.Lock()
        self.generation = 0

    def current(self) -> RuleIndex:
        try:
            info = os.stat(self.path)
            stamp: tuple = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = ("missing",)
        except OSError as exc:
            raise StoreUnavailable("cannot stat %s: %s" % (self.path, exc.strerror)) from None
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._index, self._error = RuleIndex(_accounts.load_store(self.path)), None
                except _accounts.AccountsError as exc:
                    self._index, self._error = None, str(exc)
                self._stamp = stamp
                self.generation += 1
                if self.on_reload is not None:
                    self.on_reload(self._index is not None)
            if self._index is None:
                raise StoreUnavailable(self._error or "account store unavailable")
            return self._index


class SuccessCache:
    """Successful credential checks, remembered for ``ttl`` seconds (0: off), ``size`` at most.

    Entries are keyed by an HMAC, under a random per-process key, of the parts that made the
    check (account, password, and whatever else must match): no password is kept, and a
    change in any part can never hit an old entry. Failures are never put here.
    """

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._key = secrets.token_bytes(32)
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, parts: tuple) -> bytes:
        return hmac.digest(self._key, b"\0".join(part.encode("utf-8", "surrogatepass") for part in parts), "sha256")

    def get(self, *parts: str) -> t.Any:
        """The value remembered for these parts, None when there is none (or it expired)."""
        if self.ttl <= 0:
            return None
        with self._lock:
            found = self._entries.get(self._digest(parts))
        return found[1] if found is not None and found[0] > time.monotonic() else None

    def put(self, value: t.Any, *parts: str) -> None:
        if self.ttl <= 0:
            return
        key = self._digest(parts)
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> t.Iterator[bytes]:
        return iter(list(self._entries))


class Authenticator:
    """Verifies account + password against the store, with a short-lived cache of successes.

    The cache (SuccessCache) is keyed by the account, the password and the stored hash, so a
    changed password, a rotated secret or a removed account can never hit an old entry.
    Disabled and expired accounts are checked on every call, cache or not. An unknown
    account still pays one bcrypt (no timing oracle).
    """

    def __init__(self, ttl: float = 60.0, size: int = 4096) -> None:
        self.cache = SuccessCache(ttl, size)
        self._dummy_hash = _accounts.hash_secret(secrets.token_urlsafe(16))

    def _verify(self, account: str, password: str, stored: t.Optional[str]) -> tuple:
        """(ok, from_cache)"""
        if stored is None:
            _accounts.check_secret(password, self._dummy_hash)
            return False, False
        if self.cache.get(account, password, stored):
            return True, True
        if not _accounts.check_secret(password, stored):
            return False, False
        self.cache.put(True, account, password, stored)
        return True, False

    def authenticate(self, index: RuleIndex, account: str, password: str) -> tuple:
        """(Identity or None, from_cache, reason)"""
        store = index.store
        if account.startswith("robot$"):
            robot = store["robots"].get(account)
            ok, cached = self._verify(account, password, robot["secret_hash"] if robot else None)
            if not ok:
                return None, cached, "wrong credentials"
            if robot["disabled"]:
                return None, cached, "robot account disabled"
            if _accounts.robot_is_expired(robot):
                return None, cached, "robot account expired"
            return Identity("robot", account), cached, ""
        user = store["users"].get(account)
        ok, cached = self._verify(account, password, user["password_hash"] if user else None)
        if not ok:
            return None, cached, "wrong credentials"
        if user["disabled"]:
            return None, cached, "user disabled"
        return Identity("user", account, tuple(user["groups"])), cached, ""
