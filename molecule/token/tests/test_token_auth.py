"""Token mode: per-repository permissions, robot accounts, refusal of forged tokens, audit."""
from __future__ import annotations

import json
import os
import pathlib
import shlex

import pytest

from registry_checks import (REGISTRY, Instance, assert_check_mode_changes_nothing, assert_nginx_config_is_clean,
                             claims, metric, playbook, saved_robot, token, try_push)

ADMIN = ("admin", "molecule-admin-secret")
ALICE = ("alice", "molecule-alice-secret")
BOB = ("bob", "molecule-bob-secret")
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SCENARIO = pathlib.Path(__file__).resolve().parents[1]


def robot(instance, name: str) -> tuple[str, str]:
    """Credentials of a robot from the inventory (one file per instance: each is an
    independent registry, its own account primary)."""
    return saved_robot(instance.name, name)


def bearer(instance, path: str, jwt: str, method: str = "GET") -> int:
    verb = "-I" if method == "HEAD" else f"-X {method}"
    # Distribution 2.8 answers 404 for an OCI manifest the client does not accept.
    accept = "-H 'Accept: application/vnd.oci.image.manifest.v1+json'"
    return int(instance.run(f"curl -sS -o /dev/null -w '%{{http_code}}' {verb} {accept} "
                            f"-H 'Authorization: Bearer {jwt}' https://{REGISTRY}{path}").stdout)


def can_pull(instance, creds: tuple[str, str] | None, reference: str) -> bool:
    auth = f"--creds {shlex.quote(':'.join(creds))}" if creds else "--no-creds"
    return instance.run(f"skopeo inspect {auth} docker://{REGISTRY}/{reference}", ok=False).rc == 0


@pytest.fixture(scope="module")
def app_image(host):
    instance = Instance(host)
    assert try_push(instance, ADMIN, "team-a/app:1", "team-a-app").rc == 0
    return "team-a/app:1"


def test_nginx_checks_its_configuration_without_a_warning(instance):
    assert_nginx_config_is_clean(instance)


@pytest.mark.parametrize("creds", [ALICE, None], ids=["user", "anonymous"])
def test_tokens_pass_every_check_of_the_instances_own_pyjwt(instance, creds):
    # PyJWT 2.10 (Debian 13) also requires `sub` and `jti` to be strings.
    _status, body = token(instance, creds, "repository:team-a/app:pull")
    script = ("import jwt, sys\n"
              "from cryptography import x509\n"
              "key = x509.load_pem_x509_certificate(open('/etc/dockyard/token-signing.crt', 'rb').read()).public_key()\n"
              "claims = jwt.decode(sys.argv[1], key, algorithms=['ES256'], audience=sys.argv[2], issuer='dockyard-token',\n"
              "                    options={'require': ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti']})\n"
              "print(repr(claims['sub']))\n")
    result = instance.run(f"python3 -c {shlex.quote(script)} {body['token']} {REGISTRY}")
    assert result.stdout.strip() == repr(creds[0] if creds else "")


def test_registry_sends_a_bearer_challenge(instance):
    status, headers, _size = instance.http("/v2/")
    assert status == 401
    assert headers["www-authenticate"] == (f'Bearer realm="https://{REGISTRY}/auth/token",'
                                           f'service="{REGISTRY}"')


def test_anonymous_clients_get_nothing(instance, app_image):
    status, body = token(instance, None, "repository:team-a/app:pull")
    assert status == 200 and claims(body["token"])["access"] == []
    assert not can_pull(instance, None, app_image)
    assert try_push(instance, None, "team-a/anon:1", "anon").rc != 0


def test_wrong_password_gets_401_from_the_token_service(instance):
    status, _body = token(instance, (ALICE[0], "wrong-password"), "repository:team-a/app:pull")
    assert status == 401


def test_a_pull_only_robot_pulls_but_cannot_push(instance, app_image):
    deploy = robot(instance, "robot$deploy")
    assert can_pull(instance, deploy, app_image)
    result = try_push(instance, deploy, "team-a/app:2", "deploy-push")
    assert result.rc != 0 and ("denied" in result.stderr or "unauthorized" in result.stderr), result.stderr
    assert not can_pull(instance, ADMIN, "team-a/app:2")


def test_a_project_robot_pushes_only_inside_its_namespace(instance):
    ci = robot(instance, "robot$team-a+ci")
    assert try_push(instance, ci, "team-a/ci:1", "ci-push").rc == 0
    assert can_pull(instance, ADMIN, "team-a/ci:1")
    assert try_push(instance, ci, "team-b/ci:1", "ci-elsewhere").rc != 0
    assert not can_pull(instance, ADMIN, "team-b/ci:1")


def test_podman_pushes_and_pulls_through_the_token_flow(instance):
    layout = "/tmp/oci-podman"
    instance.run(f"rm -rf {layout} && oci-image {layout} --tag 1 --seed podman-token")
    image_id = instance.run(f"podman pull -q oci:{layout}:1").stdout.strip()
    auth = "--authfile /tmp/podman-token-auth.json"
    instance.run(f"podman login {auth} -u {ALICE[0]} -p {ALICE[1]} {REGISTRY}")
    instance.run(f"podman push -q {auth} {image_id} docker://{REGISTRY}/team-a/podman:1")
    instance.run(f"podman rmi -f {image_id}")
    assert instance.run(f"podman pull -q {auth} {REGISTRY}/team-a/podman:1").stdout.strip() == image_id


def test_group_members_push_to_their_team_only(instance, app_image):
    assert try_push(instance, ALICE, "team-a/alice:1", "alice").rc == 0
    assert try_push(instance, BOB, "team-a/bob:1", "bob").rc != 0
    assert not can_pull(instance, BOB, app_image)


def test_only_the_admin_lists_the_catalog(instance, app_image):
    status, body = token(instance, ADMIN, "registry:catalog:*")
    assert status == 200
    assert bearer(instance, "/v2/_catalog", body["token"]) == 200
    for creds in (ALICE, robot(instance, "robot$team-a+ci"), None):
        status, body = token(instance, creds, "registry:catalog:*")
        assert status == 200 and claims(body["token"])["access"] == []
        assert bearer(instance, "/v2/_catalog", body["token"]) == 401


def test_a_token_for_one_repository_does_not_open_another(instance, app_image):
    assert try_push(instance, ADMIN, "team-b/other:1", "team-b-other").rc == 0
    _status, body = token(instance, ALICE, "repository:team-a/app:pull")
    assert bearer(instance, "/v2/team-a/app/manifests/1", body["token"], "HEAD") == 200
    assert bearer(instance, "/v2/team-b/other/manifests/1", body["token"], "HEAD") == 401


def test_revoked_and_expired_robots_are_refused_at_their_next_token_request(instance, app_image):
    for change in ({"robot_disabled": True}, {"robot_expires_at": "2020-01-01"}):
        name = "robot$temporary+" + next(iter(change)).split("_")[1]
        secret_file = EPHEMERAL / f"{instance.name}-{name.replace('$', '_')}.secret"
        created = playbook(str(SCENARIO / "robot.yml"), "-e", json.dumps({
            "robot_name": name, "robot_secret_file": str(secret_file),
            "robot_permissions": [{"repository": "team-a/*", "actions": ["pull"]}]}), limit=instance.name)
        assert created.returncode == 0, created.stdout[-2000:]
        creds = (name, secret_file.read_text())
        assert token(instance, creds, "repository:team-a/app:pull")[0] == 200
        assert can_pull(instance, creds, app_image)
        changed = playbook(str(SCENARIO / "robot.yml"), "-e", json.dumps(
            {"robot_name": name, "robot_secret_file": str(secret_file), **change}), limit=instance.name)
        assert changed.returncode == 0, changed.stdout[-2000:]
        assert token(instance, creds, "repository:team-a/app:pull")[0] == 401
        assert not can_pull(instance, creds, app_image)
        playbook(str(SCENARIO / "robot.yml"), "-e", json.dumps(
            {"robot_name": name, "robot_secret_file": str(secret_file), "robot_state": "absent"}), limit=instance.name)


def forge(instance, case: str) -> str:
    """A token made in the instance with the real signing key (or a stranger's), but wrong."""
    script = r'''
import base64, json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
case, real = sys.argv[1], sys.argv[2]
header = jwt.get_unverified_header(real)
claims = jwt.decode(real, options={"verify_signature": False})
key = serialization.load_pem_private_key(open("/etc/dockyard/token/token.key", "rb").read(), None)
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
if case == "aud-array":
    claims["aud"] = [claims["aud"]]
elif case == "wrong-aud":
    claims["aud"] = "other.registry.test"
elif case == "wrong-iss":
    claims["iss"] = "someone-else"
elif case == "expired":
    claims["exp"] = int(time.time()) - 3600
    claims["nbf"] = claims["iat"] = int(time.time()) - 7200
if case == "alg-none":
    print(b64(json.dumps({"typ": "JWT", "alg": "none", "kid": header["kid"]}).encode()) + "."
          + b64(json.dumps(claims).encode()) + ".")
elif case == "hs256-public-key":
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": header["kid"]}).encode()) + "." + b64(json.dumps(claims).encode())
    import hmac, hashlib
    print(body + "." + b64(hmac.new(public, body.encode(), hashlib.sha256).digest()))
elif case == "stranger-key":
    print(jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": header["kid"]}))
else:
    print(jwt.encode(claims, key, algorithm="ES256", headers={"kid": header["kid"]}))
'''
    _status, body = token(instance, ADMIN, "repository:team-a/app:pull")
    instance.run(f"cat > /tmp/forge.py <<'EOF'\n{script}\nEOF")
    return instance.run(f"python3 /tmp/forge.py {case} {body['token']}").stdout.strip()


@pytest.mark.parametrize("case", ["aud-array", "wrong-aud", "wrong-iss", "expired", "alg-none",
                                  "hs256-public-key", "stranger-key"])
def test_forged_tokens_are_refused_by_the_registry(instance, app_image, case):
    assert bearer(instance, "/v2/team-a/app/manifests/1", forge(instance, case), "HEAD") == 401


def test_a_resigned_untampered_token_is_accepted(instance, app_image):
    # The forging itself works: the same claims signed with the real key pass.
    assert bearer(instance, "/v2/team-a/app/manifests/1", forge(instance, "resign"), "HEAD") == 200


def test_cached_blobs_are_served_only_to_clients_the_registry_authorises(instance, app_image):
    manifest = json.loads(instance.run(f"skopeo inspect --raw --creds {':'.join(ADMIN)} "
                                       f"docker://{REGISTRY}/{app_image}").stdout)
    path = f"/v2/team-a/app/blobs/{manifest['layers'][0]['digest']}"
    _status, body = token(instance, robot(instance, "robot$deploy"), "repository:team-a/app:pull")
    allowed = f"-H 'Authorization: Bearer {body['token']}'"
    statuses = [instance.http(path, extra=allowed)[1].get("x-cache-status") for _attempt in range(2)]
    assert statuses[-1] == "HIT"
    status, headers, size = instance.http(path)
    assert status == 401 and size < 1024 and "Bearer" in headers["www-authenticate"]
    _status, body = token(instance, BOB, "repository:team-a/app:pull")
    status, _headers, size = instance.http(path, extra=f"-H 'Authorization: Bearer {body['token']}'")
    assert status == 401 and size < 1024
    missing = "/v2/team-a/app/blobs/sha256:" + "0" * 64
    _status, body = token(instance, robot(instance, "robot$deploy"), "repository:team-a/app:pull")
    assert instance.http(missing, extra=f"-H 'Authorization: Bearer {body['token']}'")[0] == 404


# Token requests from one address (the source is bound to it), over TLS through the gateway,
# with keep-alive: prints one [status, Retry-After, body] per request (bodies of 429s only).
LOGINS = r'''
import concurrent.futures, http.client, json, socket, ssl, sys, base64
registry, address, user, password, count, threads = sys.argv[1:7]
context = ssl.create_default_context()
class Connection(http.client.HTTPSConnection):
    def connect(self):
        sock = socket.create_connection((address, 443), 30, source_address=(address, 0))
        self.sock = context.wrap_socket(sock, server_hostname=registry)
auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
def worker(jobs):
    connection, results = Connection(registry, 443, timeout=60), []
    for _job in range(jobs):
        connection.request("GET", "/auth/token?service=%s&scope=repository:team-a/app:pull" % registry,
                           headers={"Authorization": auth})
        response = connection.getresponse()
        body = response.read().decode()
        results.append([response.status, response.getheader("Retry-After"),
                        json.loads(body) if response.status == 429 else None])
    return results
count, threads = int(count), int(threads)
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    shares = [count // threads + (index < count % threads) for index in range(threads)]
    print(json.dumps([item for part in pool.map(worker, shares) for item in part]))
'''


def logins(instance, creds: tuple[str, str], count: int, threads: int = 1) -> list:
    """Token requests from the instance's own address (not loopback, which other checks use)."""
    address = instance.run("hostname -I").stdout.split()[0]
    instance.run(f"cat > /tmp/logins.py <<'EOF'\n{LOGINS}\nEOF")
    arguments = " ".join(shlex.quote(str(value)) for value in (REGISTRY, address, *creds, count, threads))
    return json.loads(instance.run(f"python3 /tmp/logins.py {arguments}").stdout)


def test_a_busy_client_is_never_throttled_for_succeeding(instance):
    # The gateway's flood guard allows bursts of 500; the service never limits successes.
    results = logins(instance, ALICE, 500, threads=8)
    assert len(results) == 500 and [status for status, _retry, _body in results] == [200] * 500


def test_password_guessing_is_refused_for_that_account_and_address_only(instance):
    guesses = logins(instance, (BOB[0], "not-the-password"), 30)
    statuses = [status for status, _retry, _body in guesses]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429] * 20, statuses
    [(status, retry_after, body)] = logins(instance, BOB, 1)  # the right password, refused unchecked
    assert status == 429 and 0 < int(retry_after) <= 30
    assert body["errors"][0]["code"] == "TOOMANYREQUESTS" and body["errors"][0]["detail"]["scope"] == "address+account"
    assert [status for status, _retry, _body in logins(instance, ALICE, 3)] == [200] * 3
    assert token(instance, BOB, "repository:team-a/app:pull")[0] == 200  # from loopback: another address
    address = instance.run("hostname -I").stdout.split()[0]
    lines = [json.loads(line) for line in
             instance.host.file("/var/log/dockyard/token/audit.jsonl").content_string.splitlines()]
    refused = [entry for entry in lines if entry.get("result") == "refused" and entry.get("account") == BOB[0]]
    assert len(refused) >= 21 and refused[-1]["client_ip"] == address
    assert refused[-1]["refusal"]["scope"] == "address+account" and refused[-1]["refusal"]["failures"] == 10
    started = [entry for entry in lines if entry.get("account") == BOB[0] and "refusal" in entry
               and entry["result"] == "unauthorized"]
    assert started and started[-1]["failures"]["address+account"] == 10


def test_audit_log_records_token_decisions_and_registry_events(instance, app_image):
    try_push(instance, robot(instance, "robot$team-a+ci"), "team-a/audited:1", "audited")
    lines = [json.loads(line) for line in
             instance.host.file("/var/log/dockyard/token/audit.jsonl").content_string.splitlines()]
    decisions = [entry for entry in lines if entry.get("subject") == "robot:robot$team-a+ci"]
    assert decisions and any("repository:team-a/audited:pull,push" in " ".join(entry["granted"])
                             or "repository:team-a/audited:push,pull" in " ".join(entry["granted"])
                             for entry in decisions)
    pushes = [entry for entry in lines if entry.get("event") == "registry" and entry.get("action") == "push"
              and entry.get("repository") == "team-a/audited"]
    assert pushes and pushes[-1]["actor"] == "robot$team-a+ci"
    assert ADMIN[1] not in instance.run("cat /var/log/dockyard/token/audit.jsonl").stdout


def issued_tokens(instance) -> list[float]:
    """dockyard_token_requests_total{result="issued"} of several scrapes of the service's own
    socket: each lands on any worker, and each must show the sum over all of them."""
    scrapes = [instance.scrape("http://localhost/metrics", socket="/run/dockyard-token/token.sock")
               for _scrape in range(4)]
    assert all(("dockyard_token_rate_limited_total", ()) in samples for samples in scrapes)
    return [metric(samples, "dockyard_token_requests_total", result="issued", reason="ok") for samples in scrapes]


def test_metrics_count_every_workers_logins(instance):
    before = issued_tokens(instance)
    assert len(set(before)) == 1, before
    assert [token(instance, ALICE, "repository:team-a/app:pull")[0] for _login in range(6)] == [200] * 6
    assert issued_tokens(instance) == [before[0] + 6] * 4


@pytest.mark.parametrize("path", ["/metrics", "/auth/metrics", "/auth/token/metrics", "/metrics/token",
                                  "/auth/token/../../metrics", "/_dockyard/health/token", "/healthz"])
def test_metrics_are_not_public(instance, path):
    status, _headers, _size = instance.http(path, extra="--path-as-is")
    assert status == 404 and "dockyard_token" not in instance.body()
    events = instance.run("curl -sS -o /tmp/body -w '%{http_code}' http://127.0.0.1:5001/metrics").stdout
    assert events == "404" and "dockyard_token" not in instance.body()


def test_check_mode_on_a_converged_host_changes_nothing():
    assert_check_mode_changes_nothing(ADMIN[1])


def content_report(instance) -> pathlib.Path:
    return EPHEMERAL / f"content-{instance.name}.json"


def content_modules(instance, user: tuple[str, str], **extra: str):
    return playbook(str(SCENARIO / "modules.yml"), "-e", json.dumps(
        {"content_user": user[0], "content_password": user[1], "content_report": str(content_report(instance)),
         **extra}), limit=instance.name)


def test_content_modules_follow_the_bearer_challenge(instance, app_image):
    result = content_modules(instance, robot(instance, "robot$deploy"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    found = json.loads(content_report(instance).read_text())
    tags = {tag["name"]: tag for repo in found for tag in repo["tags"]}
    assert tags["1"]["digest"] == instance.inspect(app_image, creds=ADMIN)["Digest"]


def test_content_modules_report_refused_deletes_clearly(instance, app_image):
    assert try_push(instance, ADMIN, "team-a/app:doomed", "doomed").rc == 0
    refused = content_modules(instance, robot(instance, "robot$deploy"), content_delete_tag="doomed")
    assert refused.returncode != 0
    assert "401" in refused.stdout + refused.stderr or "403" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert can_pull(instance, ADMIN, "team-a/app:doomed")
    deleted = content_modules(instance, ADMIN, content_delete_tag="doomed")
    assert deleted.returncode == 0, deleted.stdout[-3000:]
    assert not can_pull(instance, ADMIN, "team-a/app:doomed")
    assert can_pull(instance, ADMIN, app_image)
