"""The registry's Bearer realm is on the name and port the client used, for served names only.

A client behind a port mapping or a load balancer can only reach the token service the way
it reached the registry, so the gateway rewrites the realm of the registry's challenge to
the name it serves that the client asked for, and the numeric port of its Host header.
`--connect-to` sends every request to the gateway's port 443 whatever the URL says, as a
port mapping does; the URL gives the TLS server name and the Host header."""
from __future__ import annotations

import pytest

from registry_checks import REGISTRY

ALIAS = "registry-alias.dockyard.test"  # gateway__server_aliases in ../molecule.yml
MAPPED = "--connect-to ::127.0.0.1:443"
HTTP = ["--http1.1", "--http2"]


def realm(authority: str) -> str:
    return f'Bearer realm="https://{authority}/auth/token",service="{REGISTRY}"'


@pytest.mark.parametrize("http", HTTP)
@pytest.mark.parametrize("authority", [REGISTRY, f"{REGISTRY}:8443", ALIAS, f"{ALIAS}:8443"])
def test_the_realm_follows_a_served_name_and_port(instance, authority, http):
    assert instance.challenge(f"https://{authority}/v2/", f"{http} {MAPPED}") == (0, realm(authority))


@pytest.mark.parametrize("http", HTTP)
def test_the_token_service_answers_on_the_realm_the_client_was_given(instance, http):
    _rc, challenge = instance.challenge(f"https://{ALIAS}:8443/v2/", f"{http} {MAPPED}")
    url = challenge.split('"')[1]
    status = instance.run(f"curl -sS -o /dev/null -w '%{{http_code}}' {http} {MAPPED} "
                          f"'{url}?service={REGISTRY}&scope=repository:team-a/app:pull'").stdout
    assert url == f"https://{ALIAS}:8443/auth/token" and status == "200"


@pytest.mark.parametrize("http", HTTP)
def test_an_unknown_server_name_gets_no_handshake(instance, http):
    # curl: 35 = the TLS handshake failed (nginx's ssl_reject_handshake).
    assert instance.challenge("https://evil.example/v2/", f"{http} {MAPPED}") == (35, None)


# A served TLS server name with another name in Host, or (HTTP/1.1 only) in an absolute
# request target, which names the server instead of the Host header.
@pytest.mark.parametrize(("http", "trick"), [
    *((http, f"-H 'Host: {name}'") for http in HTTP for name in ("evil.example", "evil.example:8443")),
    ("--http1.1", "--request-target https://evil.example/v2/"),
])
def test_an_unknown_name_in_the_request_gets_no_challenge(instance, http, trick):
    # nginx's default server closes the connection without a response (444): no realm at all.
    _rc, challenge = instance.challenge(f"https://{REGISTRY}/v2/", f"{http} {trick}")
    assert challenge is None


@pytest.mark.parametrize(("port", "answer"), [
    ("8443x", realm(REGISTRY)),
    ("x8443", realm(REGISTRY)),
    ("84430000", realm(REGISTRY)),
    ("", realm(REGISTRY)),
    # nginx refuses these Host headers itself (400, no challenge).
    ("8443/evil.example", None),
    ("8443@evil.example", None),
])
def test_a_port_that_is_not_a_number_stays_out_of_the_realm(instance, port, answer):
    assert instance.challenge(f"https://{REGISTRY}/v2/", f"-H 'Host: {REGISTRY}:{port}'") == (0, answer)
