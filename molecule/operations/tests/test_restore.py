"""Backup, destroy the host, restore onto a new one: nothing in the snapshot is lost, and
a damaged repository is refused before anything is restored."""
from __future__ import annotations

import json
import os
import pathlib
import shlex

from conftest import ADMIN, ROBOT
from registry_checks import REGISTRY, playbook, recreate_instance, saved_robot

PREPARE = str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "prepare.yml")
REPOSITORY = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "backup" / "restic"


def digest_of(client, reference: str, creds: tuple[str, str]):
    result = client.run(f"skopeo inspect --format '{{{{.Digest}}}}' --creds {shlex.quote(':'.join(creds))} "
                        f"docker://{REGISTRY}/{reference}", ok=False)
    return result.stdout.strip() if result.rc == 0 else None


def certificate_fingerprint(client) -> str:
    return client.run(f"openssl s_client -connect {REGISTRY}:443 -servername {REGISTRY} </dev/null 2>/dev/null "
                      "| openssl x509 -noout -fingerprint -sha256").stdout.strip()


def last_request_id(registry, text: str) -> str:
    """The request_id of the gateway's last audit line that contains `text`."""
    line = registry.run(f"grep {shlex.quote(text)} /var/log/dockyard/gateway/access.log | tail -n 1").stdout
    return json.loads(line)["request_id"]


def audit_has(registry, request_id: str) -> bool:
    return registry.run(f"grep -q '\"request_id\":\"{request_id}\"' /var/log/dockyard/gateway/access.log",
                        ok=False).rc == 0


def test_backup_and_restore_onto_a_new_instance(registry, client):
    robot = saved_robot(registry.name, ROBOT)
    kept = {"ops/app:1": (registry.push_image("ops/app:1", seed="app", creds=robot), robot),
            "ops/base:1": (registry.push_image("ops/base:1", seed="base", creds=ADMIN), ADMIN)}
    for reference, (digest, creds) in kept.items():
        assert digest_of(client, reference, creds) == digest
    fingerprint = certificate_fingerprint(client)
    assert fingerprint.startswith("sha256 Fingerprint=") or fingerprint.startswith("SHA256 Fingerprint=")
    pushed = last_request_id(registry, '"repository":"ops/app"')

    backup = playbook("dockyard.registry.backup", limit=registry.name)
    assert backup.returncode == 0, backup.stdout[-3000:]
    assert "dockyard-backup: snapshot" in backup.stdout
    assert "dockyard_backup_last_run_success 1" in registry.run(
        "cat /var/lib/prometheus/node-exporter/dockyard_backup.prom").stdout
    # The registry is read-write again after the snapshot.
    later = registry.push_image("ops/later:1", seed="later", creds=ADMIN)
    assert digest_of(client, "ops/later:1", ADMIN) == later

    recreate_instance(registry.name)
    assert registry.run("test -e /etc/dockyard", ok=False).rc != 0  # a new, empty host
    prepared = playbook(PREPARE, limit=registry.name)
    assert prepared.returncode == 0, prepared.stdout[-3000:]
    restored = playbook("dockyard.registry.restore", limit=registry.name)
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]

    for reference, (digest, creds) in kept.items():
        assert digest_of(client, reference, creds) == digest, reference
    assert digest_of(client, "ops/later:1", ADMIN) is None  # pushed after the snapshot
    assert certificate_fingerprint(client) == fingerprint
    assert audit_has(registry, pushed)  # the audit trail from before the snapshot
    # The robot's saved secret still works, and the restored store takes pushes again.
    assert registry.push_image("ops/app:2", seed="app2", creds=robot)


def test_a_damaged_repository_is_refused_before_anything_is_restored(registry, client):
    packs = sorted(path for path in (REPOSITORY / "data").rglob("*") if path.is_file())
    assert packs, f"no restic pack files under {REPOSITORY}"
    damaged = packs[-1]
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(byte ^ 0xFF for byte in data[middle:middle + 16])
    damaged.write_bytes(bytes(data))
    marker = registry.push_image("ops/after-restore:1", seed="after", creds=ADMIN)

    result = playbook("dockyard.registry.restore", limit=registry.name)

    assert result.returncode != 0
    assert "damaged or unreadable; nothing was restored" in result.stdout
    assert digest_of(client, "ops/after-restore:1", ADMIN) == marker
