# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a repository holds: each tag with its digest, media type, size, creation time, platforms.

The API has no bulk call: resolving a tag costs one request per tag (GET manifest).
Everything after that is per distinct digest (index children, image configs), so tags
that share images cost nothing more.  Requests run on a small thread pool.
"""
from __future__ import annotations

import datetime
import typing as t
from concurrent.futures import ThreadPoolExecutor

from .client import Manifest, RegistryClient
from .errors import RegistryNotFound

WORKERS = 8
T = t.TypeVar("T")
R = t.TypeVar("R")


def parallel(function: t.Callable[[T], R], items: t.Iterable[T], workers: int = WORKERS) -> list[R]:
    """``map`` on a thread pool; the first exception raised is re-raised here."""
    items = list(items)
    if len(items) <= 1 or workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(function, items))


def parse_time(value: t.Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time from an image config, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    date, _sep, rest = text.partition("T")
    if "." in rest:
        # Python 3.8 to 3.10 accept at most 6 fractional digits; Go writes up to 9.
        clock, _dot, fraction = rest.partition(".")
        digits = "".join(ch for ch in fraction if ch.isdigit())
        zone = fraction[len(digits):]
        rest = "%s.%s%s" % (clock, digits[:6].ljust(6, "0"), zone)
    try:
        moment = datetime.datetime.fromisoformat(date + "T" + rest if rest else date)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def format_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class TagInfo:
    def __init__(self, name: str, manifest: Manifest) -> None:
        self.name = name
        self.manifest = manifest
        self.created: float | None = None
        self.size = manifest.image_size
        self.platforms: list[dict[str, str]] = []

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def children(self) -> list[str]:
        return [str(child["digest"]) for child in self.manifest.children]

    def as_dict(self) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {
            "name": self.name,
            "digest": self.digest,
            "media_type": self.manifest.media_type,
            "manifest_size": len(self.manifest.body),
            "size": self.size,
            "created": format_time(self.created),
            "platforms": self.platforms,
        }
        return result


def platform_of(descriptor: dict[str, t.Any]) -> dict[str, str] | None:
    platform = descriptor.get("platform")
    if not isinstance(platform, dict) or platform.get("os") in (None, "unknown"):
        return None  # attestation manifests (buildkit) carry unknown/unknown
    result = {"os": str(platform.get("os")), "architecture": str(platform.get("architecture", ""))}
    if platform.get("variant"):
        result["variant"] = str(platform["variant"])
    return result


def resolve(client: RegistryClient, repository: str, tags: t.Iterable[str],
            workers: int = WORKERS) -> list[TagInfo]:
    """One GET manifest per tag; tags deleted meanwhile are left out."""
    def fetch(name: str) -> TagInfo | None:
        try:
            return TagInfo(name, client.get_manifest(repository, name))
        except RegistryNotFound:
            return None

    return [info for info in parallel(fetch, sorted(set(tags)), workers) if info is not None]


def add_details(client: RegistryClient, repository: str, infos: list[TagInfo], workers: int = WORKERS) -> None:
    """Fill in creation time, size and platforms: per distinct digest, never per tag."""
    by_digest: dict[str, Manifest] = {info.digest: info.manifest for info in infos}
    child_digests = sorted({child for info in infos for child in info.children} - set(by_digest))

    def fetch_child(digest: str) -> Manifest | None:
        try:
            return client.get_manifest(repository, digest)
        except RegistryNotFound:
            return None

    for manifest in parallel(fetch_child, child_digests, workers):
        if manifest is not None:
            by_digest[manifest.digest] = manifest

    configs = sorted({str(m.config["digest"]) for m in by_digest.values() if m.config})

    def fetch_config(digest: str) -> tuple[str, tuple[float | None, dict[str, str] | None]]:
        try:
            config = client.get_blob_json(repository, digest)
        except RegistryNotFound:
            return digest, (None, None)
        return digest, (parse_time(config.get("created")), platform_of({"platform": config}))

    configs_by_digest = dict(parallel(fetch_config, configs, workers))
    created = {digest: value[0] for digest, value in configs_by_digest.items()}

    for info in infos:
        manifest = info.manifest
        if manifest.is_index:
            times = []
            info.size = 0
            for child in manifest.children:
                child_manifest = by_digest.get(str(child["digest"]))
                platform = platform_of(child)
                if platform is not None:
                    info.platforms.append(platform)
                if child_manifest is not None:
                    info.size += child_manifest.image_size
                    if child_manifest.config:
                        times.append(created.get(str(child_manifest.config["digest"])))
            known = [moment for moment in times if moment is not None]
            info.created = max(known) if known else None
        elif manifest.config:
            info.created, platform = configs_by_digest.get(str(manifest.config["digest"]), (None, None))
            if platform is not None:
                info.platforms.append(platform)
