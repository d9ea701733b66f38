# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The token service's account store: schema, validation, matching, atomic writes.

This one file is used twice: by the ``user``, ``robot_account`` and ``access_rule``
modules (as a module_utils) and by the token service itself, which the
``token_service`` role ships with this very file copied next to it
(``roles/token_service/files/dockyard_token/_accounts.py`` is a symlink to it).
It therefore imports nothing but the standard library and, lazily, ``bcrypt``.

The store is one JSON document (see docs/token-auth.md)::

    {"version": 1,
     "users":  {"alice": {"password_hash": "$2b$...", "groups": ["team-a"], "disabled": false}},
     "robots": {"robot$team-a+ci": {"secret_hash": "$2b$...", "permissions": [...],
                "expires_at": "2026-01-01T00:00:00Z", "description": "", "disabled": false,
                "created_at": "...", "rotated_at": "..."}},
     "rules":  [{"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull"]}]}
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import grp
import json
import os
import re
import secrets
import tempfile
import typing as t

try:
    import bcrypt
    HAS_BCRYPT = True
    BCRYPT_IMPORT_ERROR = None
except ImportError as exc:  # the modules report it with missing_required_lib()
    HAS_BCRYPT = False
    BCRYPT_IMPORT_ERROR = exc

STORE_VERSION = 1
DEFAULT_STORE_PATH = "/etc/dockyard/token/accounts.json"
ACTIONS = ("pull", "push", "delete", "catalog")
SUBJECT_KINDS = ("user", "group", "robot")
SUBJECT_WORDS = ("anonymous", "authenticated")
BCRYPT_ROUNDS = 12
BCRYPT_MAX_BYTES = 72
USER_SUBSTITUTION = "${user}"
MAX_NAME = 64
MAX_PATTERN = 255

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,%d}\Z" % (MAX_NAME - 1))
_ROBOT_RE = re.compile(r"robot\$[a-z0-9][a-z0-9._-]{0,%d}(?:\+[a-z0-9][a-z0-9._-]{0,%d})?\Z"
                       % (MAX_NAME - 1, MAX_NAME - 1))
_PATTERN_CHARS_RE = re.compile(r"[a-z0-9._/:*-]*\Z")
_DURATION_RE = re.compile(r"(\d{1,6})\s*([smhdw])\Z")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AccountsError(Exception):
    """Base of every error the account store code raises on purpose."""


class InvalidValue(AccountsError):
    """A name, pattern, action, subject or expiry is not acceptable."""


class StoreError(AccountsError):
    """The store file cannot be read, parsed, validated or written."""


class MissingLibrary(AccountsError):
    """bcrypt is not installed where this code runs."""


# --- names, patterns, actions, subjects ----------------------------------------------

def check_user_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidValue("%s %r is invalid: use 1-%d characters of a-z, 0-9, '.', '_', '-', "
                           "starting with a letter or digit" % (what, name, MAX_NAME))
    return name


def check_group_name(name: str) -> str:
    return check_user_name(name, "group name")


def check_robot_name(name: str) -> str:
    if not isinstance(name, str) or not _ROBOT_RE.match(name):
        raise InvalidValue("robot account name %r is invalid: use robot$PROJECT or robot$PROJECT+NAME, "
                           "PROJECT and NAME of a-z, 0-9, '.', '_', '-' (at most %d each)" % (name, MAX_NAME))
    return name


def check_pattern(pattern: str) -> str:
    """A repository pattern: lower-case repository characters, ``*`` and ``${user}``."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise InvalidValue("repository pattern %r is invalid: it must have 1-%d characters" % (pattern, MAX_PATTERN))
    bare = pattern.replace(USER_SUBSTITUTION, "u")
    if not _PATTERN_CHARS_RE.match(bare) or "**" in pattern or bare.startswith("/") or bare.endswith("/") or "//" in bare:
        raise InvalidValue("repository pattern %r is invalid: use repository name characters "
                           "(a-z 0-9 . _ - / :), '*' and '${user}'; no '**', no empty path component" % (pattern,))
    return pattern


def check_actions(actions: t.Iterable[str], pattern: str = "*") -> list:
    result = []
    for action in actions:
        if action not in ACTIONS:
            raise InvalidValue("unknown action %r: use %s" % (action, ", ".join(ACTIONS)))
        if action not in result:
            result.append(action)
    if "catalog" in result and pattern != "*":
        raise InvalidValue("the catalog action lists every repository name, so it is only granted "
                           "with the repository pattern '*' (got %r)" % (pattern,))
    return sorted(result, key=ACTIONS.index)


def check_subject(subject: str) -> str:
    if subject in SUBJECT_WORDS:
        return subject
    kind, sep, name = subject.partition(":") if isinstance(subject, str) else ("", "", "")
    if not sep or kind not in SUBJECT_KINDS:
        raise InvalidValue("subject %r is invalid: use user:NAME, group:NAME, robot:NAME, "
                           "anonymous or authenticated" % (subject,))
    if kind == "robot":
        check_robot_name(name)
    else:
        check_user_name(name, "%s name" % kind)
    return subject


def match_pattern(pattern: str, name: str, user: t.Optional[str] = None) -> bool:
    """Match a repository name against a pattern; ``*`` is any run of characters, ``/`` too.

    ``${user}`` stands for the authenticated user's name and never matches without one.
    The whole name must match. Literal pieces are searched left to right, leftmost
    first, which is exact for ``*``-only globs and takes O(len(name) * pieces).
    """
    if USER_SUBSTITUTION in pattern:
        if not user:
            return False
        pattern = pattern.replace(USER_SUBSTITUTION, user)
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == name
    first, last = pieces[0], pieces[-1]
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    position, end = len(first), len(name) - len(last)
    for piece in pieces[1:-1]:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


# --- time -----------------------------------------------------------------------------

def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    """RFC 3339 / ISO 8601 date or date-time; no zone means UTC."""
    if not isinstance(text, str) or len(text) > 40:
        raise InvalidValue("time %r is invalid: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ" % (text,))
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue("time %r is invalid: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ" % (text,)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0)


def parse_duration(text: str) -> datetime.timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``3600s``."""
    match = _DURATION_RE.match(str(text).strip().lower())
    if not match or int(match.group(1)) == 0:
        raise InvalidValue("duration %r is invalid: use a positive number followed by s, m, h, d or w "
                           "(e.g. 90d)" % (text,))
    return datetime.timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


# --- secrets --------------------------------------------------------------------------

def _need_bcrypt() -> None:
    if not HAS_BCRYPT:
        raise MissingLibrary("the Python library bcrypt is required (Debian: python3-bcrypt): %s"
                             % BCRYPT_IMPORT_ERROR)


def hash_secret(secret: str, rounds: t.Optional[int] = None) -> str:
    _need_bcrypt()
    raw = secret.encode("utf-8")
    if not raw or len(raw) > BCRYPT_MAX_BYTES:
        raise InvalidValue("passwords and secrets must have 1-%d bytes (bcrypt ignores the rest)" % BCRYPT_MAX_BYTES)
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds or BCRYPT_ROUNDS)).decode("ascii")


def check_secret(secret: str, hashed: t.Optional[str]) -> bool:
    _need_bcrypt()
    raw = secret.encode("utf-8", "surrogatepass")
    if not hashed or not raw or len(raw) > BCRYPT_MAX_BYTES:
        return False
    try:
        return bool(bcrypt.checkpw(raw, hashed.encode("ascii")))
    except (ValueError, TypeError):
        return False


def new_secret() -> str:
    """256 random bits, URL-safe (43 characters: fits bcrypt's 72 bytes)."""
    return secrets.token_urlsafe(32)


# --- the document ---------------------------------------------------------------------

def empty_store() -> dict:
    return {"version": STORE_VERSION, "users": {}, "robots": {}, "rules": []}


def _check_permission_list(items: t.Any, where: str) -> list:
    if not isinstance(items, list):
        raise InvalidValue("%s: permissions must be a list" % where)
    result = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"repository", "actions"}:
            raise InvalidValue("%s: each permission is {repository: PATTERN, actions: [...]}" % where)
        pattern = check_pattern(item.get("repository"))
        actions = item.get("actions")
        if not isinstance(actions, list) or not actions:
            raise InvalidValue("%s: permission on %r needs a non-empty list of actions" % (where, pattern))
        result.append({"repository": pattern, "actions": check_actions(actions, pattern)})
    return result


def normalize_permissions(items: t.Any, where: str = "permissions") -> list:
    """Validated, de-duplicated, sorted permissions (so that comparing them is meaningful)."""
    merged: dict = {}
    for item in _check_permission_list(items, where):
        merged.setdefault(item["repository"], set()).update(item["actions"])
    return [{"repository": pattern, "actions": sorted(actions, key=ACTIONS.index)}
            for pattern, actions in sorted(merged.items())]


def _check_flag(value: t.Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue("%s must be true or false" % where)
    return value


def validate_store(data: t.Any) -> dict:
    """Check a loaded document completely; return a normalised deep copy."""
    if not isinstance(data, dict) or data.get("version") != STORE_VERSION:
        raise StoreError("not an account store of version %d" % STORE_VERSION)
    extra = set(data) - {"version", "users", "robots", "rules"}
    if extra:
        raise StoreError("unknown top-level keys: %s" % ", ".join(sorted(extra)))
    store = empty_store()
    try:
        for name, user in (data.get("users") or {}).items():
            check_user_name(name)
            if not isinstance(user, dict) or not isinstance(user.get("password_hash"), str):
                raise InvalidValue("user %s: password_hash missing" % name)
            groups = user.get("groups", [])
            if not isinstance(groups, list):
                raise InvalidValue("user %s: groups must be a list" % name)
            store["users"][name] = {
                "password_hash": user["password_hash"],
                "groups": sorted({check_group_name(group) for group in groups}),
                "disabled": _check_flag(user.get("disabled", False), "user %s: disabled" % name),
            }
        for name, robot in (data.get("robots") or {}).items():
            check_robot_name(name)
            if not isinstance(robot, dict) or not isinstance(robot.get("secret_hash"), str):
                raise InvalidValue("robot %s: secret_hash missing" % name)
            expires_at = robot.get("expires_at")
            store["robots"][name] = {
                "secret_hash": robot["secret_hash"],
                "permissions": normalize_permissions(robot.get("permissions", []), "robot %s" % name),
                "expires_at": format_time(parse_time(expires_at)) if expires_at is not None else None,
                "description": str(robot.get("description") or ""),
                "disabled": _check_flag(robot.get("disabled", False), "robot %s: disabled" % name),
                "created_at": robot.get("created_at"),
                "rotated_at": robot.get("rotated_at"),
            }
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            raise InvalidValue("rules must be a list")
        for rule in rules:
            if not isinstance(rule, dict) or set(rule) - {"subject", "repository", "actions"}:
                raise InvalidValue("each rule is {subject, repository, actions}")
            pattern = check_pattern(rule.get("repository"))
            actions = rule.get("actions")
            if not isinstance(actions, list) or not actions:
                raise InvalidValue("rule %s on %s: actions must be a non-empty list" % (rule.get("subject"), pattern))
            store["rules"].append({"subject": check_subject(rule.get("subject")), "repository": pattern,
                                   "actions": check_actions(actions, pattern)})
    except (AttributeError, TypeError) as exc:
        raise StoreError("malformed account store: %s" % exc) from None
    return store


def find_rule(store: dict, subject: str, pattern: str) -> t.Optional[dict]:
    for rule in store["rules"]:
        if rule["subject"] == subject and rule["repository"] == pattern:
            return rule
    return None


def robot_is_expired(robot: dict, now: t.Optional[datetime.datetime] = None) -> bool:
    if robot.get("expires_at") is None:
        return False
    return parse_time(robot["expires_at"]) <= (now or utcnow())


# --- the file -------------------------------------------------------------------------

def load_store(path: str, missing_ok: bool = True) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return empty_store()
        raise StoreError("account store %s does not exist" % path) from None
    except OSError as exc:
        raise StoreError("cannot read account store %s: %s" % (path, exc.strerror)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError("account store %s is not valid JSON: %s" % (path, exc)) from None
    try:
        return validate_store(data)
    except AccountsError as exc:
        raise StoreError("account store %s is invalid: %s" % (path, exc)) from None


def dump_store(store: dict) -> bytes:
    return (json.dumps(store, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_store(path: str, store: dict, mode: int = 0o640, group: t.Optional[int] = None) -> None:
    """Write atomically: temp file in the same directory, fsync, rename, fsync the directory.

    An existing file keeps its mode, owner and group; a new one gets ``mode`` and ``group``.
    """
    data = dump_store(validate_store(copy.deepcopy(store)))
    directory = os.path.dirname(os.path.abspath(path))
    uid = -1
    gid = -1 if group is None else group
    try:
        current = os.stat(path)
        mode, uid, gid = current.st_mode & 0o7777, current.st_uid, current.st_gid
    except FileNotFoundError:
        pass
    try:
        os.makedirs(directory, mode=0o750, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".accounts.", dir=directory)
        try:
            os.fchmod(handle, mode)
            if uid != -1 or gid != -1:
                os.fchown(handle, uid, gid)
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StoreError("cannot write account store %s: %s" % (path, exc.strerror or exc)) from None


@contextlib.contextmanager
def locked(path: str) -> t.Iterator[None]:
    """Serialise writers (several modules on one host) with a lock file beside the store."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o750, exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError("cannot lock account store %s: %s" % (path, exc.strerror)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- what the modules share ------------------------------------------------------------

# The options of the doc fragment dockyard.registry.accounts_store, for every module that
# edits the store (kept here, beside the code that honours them).
STORE_ARGUMENT_SPEC = {
    "store_path": {"type": "path", "default": DEFAULT_STORE_PATH},
    "store_group": {"type": "str", "default": "dockyard-token"},
}


def group_id(name: t.Optional[str]) -> t.Optional[int]:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise InvalidValue("group %r does not exist (create it, or set store_group)" % name) from None


class Transaction:
    """Lock, read, let the caller change ``self.store``, write only if it changed.

    ``with Transaction(path, group, check_mode) as tx: tx.store[...] = ...``; afterwards
    ``tx.changed`` says whether the document differs (in check mode: would differ).
    """

    def __init__(self, path: str, group: t.Optional[str] = None, check_mode: bool = False) -> None:
        self.path = path
        self.group = group
        self.check_mode = check_mode
        self.before: dict = {}
        self.store: dict = {}
        self.changed = False
        self._lock: t.Optional[t.ContextManager] = None

    def __enter__(self) -> "Transaction":
        if not self.check_mode:
            self._lock = locked(self.path)
            self._lock.__enter__()
        try:
            self.before = load_store(self.path)
        except BaseException:
            self._release()
            raise
        self.store = copy.deepcopy(self.before)
        return self

    def __exit__(self, kind: t.Any, value: t.Any, trace: t.Any) -> None:
        try:
            if kind is None:
                self.changed = validate_store(self.store) != self.before
                if self.changed and not self.check_mode:
                    write_store(self.path, self.store, group=group_id(self.group))
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)
