"""TLS, headers, authentication and the blob cache of the gateway."""
from __future__ import annotations

import json
import re

import pytest

from registry_checks import PUSHER, READER, REGISTRY, assert_nginx_config_is_clean


def test_nginx_checks_its_configuration_without_a_warning(instance):
    assert_nginx_config_is_clean(instance)


def test_clients_get_http2(instance):
    result = instance.run(f"curl -sS --http2 -u {':'.join(READER)} -o /dev/null -w '%{{http_version}}' "
                          f"https://{REGISTRY}/v2/")
    assert result.stdout.strip() == "2"


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused(instance, version):
    # SECLEVEL=0 lets the client offer the old version, so the refusal is the server's.
    result = instance.run(f"openssl s_client {version} -cipher DEFAULT@SECLEVEL=0 -connect 127.0.0.1:443 "
                          f"-servername {REGISTRY} </dev/null", ok=False)
    assert result.rc != 0
    assert "alert protocol version" in result.stderr or "unsupported protocol" in result.stderr


@pytest.mark.parametrize("version, protocol", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_current_tls_versions_are_accepted(instance, version, protocol):
    result = instance.run(f"openssl s_client {version} -connect 127.0.0.1:443 -servername {REGISTRY} "
                          f"-verify_return_error </dev/null")
    assert f"Protocol  : {protocol}" in result.stdout or f"New, {protocol}" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


def test_tls12_offers_only_forward_secret_aead_ciphers(instance):
    weak = instance.run(f"openssl s_client -tls1_2 -cipher AES128-SHA:AES256-SHA256 -connect 127.0.0.1:443 "
                        f"-servername {REGISTRY} </dev/null", ok=False)
    assert weak.rc != 0


def test_certificate_names_the_registry_and_lives_at_most_366_days(instance):
    text = instance.run("openssl x509 -in /etc/nginx/tls/registry.crt -noout -text").stdout
    assert f"DNS:{REGISTRY}" in text
    dates = instance.run("openssl x509 -in /etc/nginx/tls/registry.crt -noout -startdate -enddate").stdout
    start, end = (instance.run(f"date -d '{line.split('=', 1)[1]}' +%s").stdout for line in dates.splitlines())
    assert 0 < int(end) - int(start) <= 366 * 86400
    key = instance.host.file("/etc/nginx/tls/registry.key")
    assert key.user == "root" and key.mode == 0o600


def test_every_response_carries_hsts_and_no_version(instance):
    for path, creds in (("/v2/", None), ("/v2/", READER), ("/", None), ("/v2/nope/manifests/x", READER)):
        _status, headers, _size = instance.http(path, creds=creds)
        assert headers.get("strict-transport-security") == "max-age=63072000", (path, headers)
        assert headers.get("server") == "nginx"


def test_anonymous_and_wrong_password_get_401_with_registry_headers(instance):
    for creds in (None, (PUSHER[0], "wrong-password"), ("nobody", "whatever-password")):
        status, headers, _size = instance.http("/v2/", creds=creds)
        assert status == 401
        assert headers["www-authenticate"].startswith("Basic ")
        assert headers["docker-distribution-api-version"] == "registry/2.0"
    status, _headers, _size = instance.http("/v2/", creds=READER)
    assert status == 200 and instance.body().strip() == "{}"


def test_plain_http_only_redirects_to_the_registry_name(instance):
    result = instance.run(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{REGISTRY}/v2/_catalog")
    assert result.stdout == f"301 https://{REGISTRY}/v2/_catalog"


def test_unknown_names_are_rejected(instance):
    handshake = instance.run("curl -sS --resolve evil.test:443:127.0.0.1 https://evil.test/v2/", ok=False)
    assert handshake.rc == 35  # TLS handshake refused: no certificate is offered for that name
    wrong_host = instance.run(f"curl -sS --http1.1 -u {':'.join(READER)} -H 'Host: evil.test' -w '%{{http_code}}' "
                              f"-o /dev/null https://{REGISTRY}/v2/", ok=False)
    # No answer at all: nginx closed the connection (444). curl 7.88 (Debian 12) calls that an
    # empty reply (52); curl 8.14 with OpenSSL 3.5 (Debian 13) a TLS read error (56).
    assert wrong_host.rc in (52, 56) and wrong_host.stdout == "000", (wrong_host.rc, wrong_host.stderr)
    plain = instance.run("curl -sS -H 'Host: evil.test' http://127.0.0.1/", ok=False)
    assert plain.rc == 52


def _blob_path(instance, reference: str) -> str:
    manifest = instance.run(f"skopeo inspect --raw --creds {':'.join(READER)} docker://{REGISTRY}/{reference}").stdout
    digest = re.findall(r'"digest":\s*"(sha256:[0-9a-f]{64})"', manifest)[-1]
    return f"/v2/{reference.split(':')[0]}/blobs/{digest}"


def test_blob_cache_serves_hits_only_after_authentication(instance):
    instance.push_image("cache/probe:1", seed="cache-probe")
    path = _blob_path(instance, "cache/probe:1")
    statuses = [instance.http(path, creds=READER)[1].get("x-cache-status") for _attempt in range(2)]
    assert statuses[-1] == "HIT", statuses
    _status, _headers, size = instance.http(path, creds=READER)
    for creds in (None, (READER[0], "wrong-password")):
        status, headers, leaked = instance.http(path, creds=creds)
        assert status == 401
        assert "x-cache-status" not in headers
        assert leaked < 1024 < size


def test_a_deleted_blob_is_gone_at_once_even_after_cache_hits(instance):
    instance.push_image("cache/deleted:1", seed="cache-deleted")
    path = _blob_path(instance, "cache/deleted:1")
    statuses = [instance.http(path, creds=READER)[1].get("x-cache-status") for _attempt in range(2)]
    assert statuses[-1] == "HIT", statuses
    assert instance.http(path, method="DELETE", creds=PUSHER)[0] == 202
    status, headers, _size = instance.http(path, creds=READER)
    assert status == 404 and "x-cache-status" not in headers
    assert json.loads(instance.body())["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_errors_of_the_gateway_are_registry_errors(instance):
    for path, creds, method, expected in (("/v2/", None, "GET", 401), ("/v2/no/such/path", READER, "GET", 404),
                                          ("/", None, "GET", 404), ("/v2/", READER, "TRACE", 405)):
        status, headers, _size = instance.http(path, creds=creds, method=method)
        assert status == expected, (path, status)
        assert headers["content-type"] == "application/json", headers
        assert headers["docker-distribution-api-version"] == "registry/2.0"
        assert json.loads(instance.body())["errors"][0]["code"]


def test_manifests_tag_lists_and_errors_are_never_cached(instance):
    instance.push_image("cache/manifest:1", seed="cache-manifest")
    for path in ("/v2/cache/manifest/manifests/1", "/v2/cache/manifest/tags/list", "/v2/_catalog",
                 "/v2/cache/manifest/blobs/sha256:" + "0" * 64):
        for _attempt in range(2):
            _status, headers, _size = instance.http(path, creds=READER)
            assert headers.get("x-cache-status") in (None, "MISS"), (path, headers)


def test_audit_log_records_user_repository_and_status(instance):
    instance.push_image("audit/trail:7", seed="audit")
    lines = instance.run("grep -F '\"repository\":\"audit/trail\"' /var/log/dockyard/gateway/access.log").stdout
    entries = [json.loads(line) for line in lines.splitlines()]
    pushes = [e for e in entries if e["method"] == "PUT" and e["reference"] == "7"]
    assert pushes and pushes[-1]["user"] == PUSHER[0] and pushes[-1]["status"] == 201
    assert all(e["request_id"] and e["client"] == "127.0.0.1" for e in entries)
    assert PUSHER[1] not in instance.run("cat /var/log/dockyard/gateway/access.log /var/log/nginx/error.log").stdout
    instance.run("logrotate -d /etc/logrotate.d/dockyard-gateway")
