"""Failed-login limits in the real service: gunicorn with two workers sharing their counters.

Clients are told apart by X-Real-IP, as nginx sets it in front of the service.
"""
from __future__ import annotations

import concurrent.futures
import json

import pytest

from token_stack import PYTESTMARK, request_token

pytestmark = PYTESTMARK

PASSWORDS = {"carol": "carol-pw-19fe", "dave": "dave-pw-5c20"}
SCOPE = "repository:team-c/app:pull"


@pytest.fixture(scope="module")
def users(stack):
    stack.playbook([{"name": name, "dockyard.registry.user": {"name": name, "password": password}}
                    for name, password in PASSWORDS.items()], "limit-users")
    return {name: "%s:%s" % (name, password) for name, password in PASSWORDS.items()}


def login(stack, creds, address):
    return request_token(stack.token_url, creds, [SCOPE], headers={"X-Real-IP": address})


def test_500_successful_logins_from_one_address_all_get_tokens(stack, users):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _index: login(stack, users["carol"], "192.0.2.10"), range(500)))
    assert [status for status, _headers, _body in results] == [200] * 500
    assert all(body["token"] for _status, _headers, body in results)


def test_thirty_wrong_passwords_refuse_that_account_from_that_address_only(stack, users):
    guesses = [login(stack, "dave:guess-%d" % attempt, "192.0.2.20")[0] for attempt in range(30)]
    assert guesses == [401] * 10 + [429] * 20  # the workers count together
    status, headers, body = login(stack, users["dave"], "192.0.2.20")
    assert status == 429 and headers["Content-Type"] == "application/json"
    assert 0 < int(headers["Retry-After"]) <= 30
    assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert body["errors"][0]["detail"] == {"scope": "address+account", "retry_after": int(headers["Retry-After"])}
    assert all(login(stack, users["carol"], "192.0.2.20")[0] == 200 for _attempt in range(5))
    assert login(stack, users["dave"], "192.0.2.21")[0] == 200
    lines = [json.loads(line) for line in stack.audit_log.read_text().splitlines()]
    refused = [line for line in lines if line.get("result") == "refused"]
    assert len(refused) == 21 and {line["client_ip"] for line in refused} == {"192.0.2.20"}
    assert {line["account"] for line in refused} == {"dave"}
    assert refused[-1]["refusal"] == {"scope": "address+account", "failures": 10,
                                      "seconds": int(headers["Retry-After"])}
    assert not any(PASSWORDS["dave"] in json.dumps(line) for line in lines)
    assert sorted(path.name for path in (stack.workdir / "limits").iterdir()) == ["failures.json", "refusals.json"]
