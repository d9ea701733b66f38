"""The playbooks as operators run them, from the controller against the converged instance."""
from __future__ import annotations

from registry_checks import PUSHER, assert_check_mode_changes_nothing, playbook, recap


def test_check_mode_on_a_converged_host_changes_nothing():
    assert_check_mode_changes_nothing(PUSHER[1])


def test_gc_playbook_runs_the_safe_collection_and_reports():
    result = playbook("-e", "dockyard_hosts=registry", "dockyard.registry.gc")
    assert result.returncode == 0, result.stdout[-3000:]
    assert '"result": "ok"' in result.stdout
    assert recap(result.stdout)["failed"] == 0


def test_bad_input_is_refused_before_anything_changes(instance):
    before = instance.host.file("/etc/nginx/nginx.conf").content_string
    cases = {
        "gateway__server_name=not_a_host!": "gateway__server_name",
        "registry__storage_path=relative/path": "registry__storage_path",
        "registry__gc_schedule='61 * * * *'": "registry__gc_schedule",
        "{\"gateway__users\": [{\"name\": \"nopass\"}]}": "password",
        "gateway__tls_certificate=/tmp/cert.pem": "gateway__tls_certificate_key",
    }
    for extra, mentioned in cases.items():
        result = playbook("-e", "dockyard_hosts=registry", "-e", extra, "dockyard.registry.site", limit=instance.name)
        assert result.returncode != 0, extra
        assert mentioned in result.stdout + result.stderr, (extra, result.stderr[-2000:])
        assert "Traceback" not in result.stdout + result.stderr
        counts = recap(result.stdout)
        assert counts["changed"] == 0, (extra, counts)
    assert instance.host.file("/etc/nginx/nginx.conf").content_string == before
