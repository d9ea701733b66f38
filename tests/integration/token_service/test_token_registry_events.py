"""The real docker-registry 2.8 posts its notifications to the service: pushes and pulls land in the audit.

The registry runs with token auth and a ``notifications.endpoints`` entry shaped like the
role's fact ``token_service__registry_notification``; skopeo pushes as a robot and pulls
as a user, and the audit file must name both as actors.
"""
from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from token_stack import PYTESTMARK, ROOT, SERVICE

pytestmark = PYTESTMARK


def skopeo_copy(source, destination, src_creds=None, dest_creds=None):
    command = ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--retry-times", "0"]
    command += ["--src-creds", src_creds] if src_creds else []
    command += ["--dest-creds", dest_creds] if dest_creds else []
    run = subprocess.run(command + [source, destination], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr


def status_of(url, method="GET", headers=None, body=None):
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def get_token(stack, creds, scope):
    request = urllib.request.Request("%s?%s" % (stack.token_url, urllib.parse.urlencode(
        {"service": SERVICE, "scope": scope})))
    request.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return json.load(response)["token"]


def registry_lines(stack, predicate, timeout=20):
    """Notifications are sent asynchronously: wait until the audit holds a matching line."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in stack.audit_log.read_text().splitlines()]
        found = [line for line in lines if line["event"] == "registry" and predicate(line)]
        if found or time.monotonic() > deadline:
            return lines, found
        time.sleep(0.2)


def test_pushes_and_pulls_are_audited_with_their_actor(stack, tmp_path):
    results = stack.playbook([
        {"name": "carol", "dockyard.registry.user": {"name": "carol", "password": "carol-pw-93f1", "groups": ["team-a"]}},
        {"name": "rule", "dockyard.registry.access_rule": {
            "subject": "group:team-a", "repository": "team-a/*", "actions": ["pull"]}},
        {"name": "ci", "dockyard.registry.robot_account": {
            "name": "robot$team-a+builder", "permissions": [{"repository": "team-a/*", "actions": ["pull", "push"]}]}},
    ], "events-accounts")
    robot = "robot$team-a+builder:%s" % results["ci"]["secret"]
    image = tmp_path / "image"
    subprocess.run([sys.executable, str(ROOT / "tools" / "oci_image.py"), str(image), "--tag", "1.0",
                    "--layers", "1", "--layer-size", "16K"], check=True, capture_output=True)

    skopeo_copy("oci:%s:1.0" % image, "docker://%s/team-a/audited:1.0" % stack.host, dest_creds=robot)
    skopeo_copy("docker://%s/team-a/audited:1.0" % stack.host, "oci:%s:pulled" % tmp_path,
                src_creds="carol:carol-pw-93f1")

    _lines, pushes = registry_lines(stack, lambda line: line["action"] == "push" and line["tag"] == "1.0")
    lines, pulls = registry_lines(stack, lambda line: line["action"] == "pull" and line["tag"] == "1.0")
    assert pushes and pulls, lines[-10:]
    for line, actor in ((pushes[0], "robot$team-a+builder"), (pulls[0], "carol")):
        assert (line["actor"], line["repository"], line["client_ip"]) == (actor, "team-a/audited", "127.0.0.1")
        assert line["digest"].startswith("sha256:") and line["media_type"] and line["size"] > 0
        assert line["time"].endswith("Z") and line["request_id"] and line["user_agent"]
    # Layer uploads are audited too, as pushes of blobs without a tag.
    assert any(line["action"] == "push" and line["tag"] is None and line["actor"] == "robot$team-a+builder"
               for line in lines if line["event"] == "registry")
    text = stack.audit_log.read_text()
    assert stack.events_secret not in text and results["ci"]["secret"] not in text

    # request.addr is the FIRST X-Forwarded-For hop when there is one: the gateway must
    # overwrite that header with $remote_addr, or clients choose their client_ip.
    token = get_token(stack, "carol:carol-pw-93f1", "repository:team-a/audited:pull")
    assert status_of("%s/v2/team-a/audited/manifests/1.0" % stack.registry, headers={
        "Authorization": "Bearer " + token, "X-Forwarded-For": "198.51.100.23, 127.0.0.1",
        "Accept": "application/vnd.oci.image.manifest.v1+json"}) == 200
    assert registry_lines(stack, lambda line: line["client_ip"] == "198.51.100.23")[1]


def test_events_listener_serves_events_only_to_the_secret(stack):
    base = stack.events_url.rsplit("/", 1)[0]
    query = urllib.parse.urlencode({"service": "x"})
    assert status_of(base + "/auth/token?" + query) == 404
    assert status_of(base + "/healthz") == 200
    envelope = json.dumps({"events": []}).encode()
    media = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    assert status_of(stack.events_url, "POST", media, envelope) == 401
    assert status_of(stack.events_url, "POST", dict(media, Authorization="Bearer wrong"), envelope) == 401
    authorized = dict(media, Authorization="Bearer " + stack.events_secret)
    assert status_of(stack.events_url, "POST", authorized, envelope) == 200
    assert status_of(stack.events_url, "POST", authorized, b"{not json") == 400
    # Refused on the declared length alone, before any of the body is read.
    url = urllib.parse.urlsplit(stack.events_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest("POST", url.path)
        for name, value in dict(authorized, **{"Content-Length": str(2 * 1024 * 1024)}).items():
            connection.putheader(name, value)
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()
