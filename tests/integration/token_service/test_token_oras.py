"""oras-py 0.2 against the real token stack: the README's troubleshooting entry, proven.

oras-py keeps the first token it gets and sends it again after a 401 ``insufficient_scope``
(it asks anew only after a 403), so a push that starts with a pull-scoped token fails. A
token requested up front with ``pull,push`` for the repository works.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from token_stack import PYTESTMARK, SERVICE

pytestmark = PYTESTMARK
oras_client = pytest.importorskip("oras.client", reason="pip install 'oras<0.3' (requirements-dev.txt)")

PUSHER = ("oras-pusher", "oras-pusher-pw-31c9")
REPOSITORY = "team-o/artifact"


@pytest.fixture(scope="module")
def pusher(stack):
    stack.playbook([
        {"dockyard.registry.user": {"name": PUSHER[0], "password": PUSHER[1]}},
        {"dockyard.registry.access_rule": {"subject": "user:" + PUSHER[0], "repository": "team-o/*",
                                           "actions": ["pull", "push"]}},
    ], "oras-accounts")
    return PUSHER


@pytest.fixture
def artifact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # oras-py pushes only paths below the working directory
    (tmp_path / "artifact.txt").write_text("pushed with oras-py\n")
    return "artifact.txt"


def push_token(stack, creds) -> str:
    request = urllib.request.Request(
        "%s?service=%s&scope=repository:%s:pull,push" % (stack.token_url, SERVICE, REPOSITORY),
        headers={"Authorization": "Basic " + base64.b64encode(":".join(creds).encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["token"]


def tag_exists(stack, tag: str) -> bool:
    # Distribution 2.8 answers 404 for an OCI manifest the client does not say it accepts.
    request = urllib.request.Request("%s/v2/%s/manifests/%s" % (stack.registry, REPOSITORY, tag), method="HEAD",
                                     headers={"Authorization": "Bearer " + push_token(stack, PUSHER),
                                              "Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as error:
        assert error.code == 404, error.code
        return False


def test_oras_py_push_with_a_password_fails_on_its_pull_scoped_token(stack, pusher, artifact):
    client = oras_client.OrasClient(hostname=stack.host, insecure=True)
    client.auth.set_basic_auth(*pusher)
    with pytest.raises(ValueError, match="session url") as failure:
        client.push(files=[artifact], target="%s/%s:password" % (stack.host, REPOSITORY))
    # The registry's 401 for the upload, which asks for push: the token oras-py sent was pull-only.
    assert "UNAUTHORIZED" in str(failure.value) and "'Action': 'push'" in str(failure.value), failure.value
    assert not tag_exists(stack, "password")


def test_oras_py_pushes_and_pulls_with_a_push_token_requested_first(stack, pusher, artifact, tmp_path):
    client = oras_client.OrasClient(hostname=stack.host, insecure=True)
    client.auth.set_token_auth(push_token(stack, pusher))
    client.push(files=[artifact], target="%s/%s:token" % (stack.host, REPOSITORY))
    assert tag_exists(stack, "token")
    pulled = client.pull(target="%s/%s:token" % (stack.host, REPOSITORY), outdir=str(tmp_path / "pulled"))
    assert [open(path, encoding="utf-8").read() for path in pulled] == ["pushed with oras-py\n"]
