"""Drive tollgate's management API the way LiteLLM users do.

A script written for LiteLLM's proxy: plain HTTP with LiteLLM's JSON shapes
for /team/new, /user/new, /key/generate, /key/info, /key/update, /key/block,
/spend/logs and /global/spend*, and the official `openai` SDK for the calls.

Environment: TOLLGATE_BASE_URL, TOLLGATE_KEY (the master key).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

import openai

BASE = os.environ["TOLLGATE_BASE_URL"]
MASTER = os.environ["TOLLGATE_KEY"]


def api(method, path, body=None, key=MASTER):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ok(method, path, body=None, key=MASTER):
    status, out = api(method, path, body, key)
    assert status == 200, (method, path, status, out)
    return out


def wait_for(what, check, limit=20.0):
    start = time.monotonic()
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() - start < limit, f"never happened: {what}"
        time.sleep(0.1)


# A team with a budget, a user in it, and a key for the user.
team = ok("POST", "/team/new", {"team_alias": "Research", "models": ["demo"], "max_budget": 10, "budget_duration": "30d"})
team_id = team["team_id"]
assert team["team_alias"] == "Research"
user = ok("POST", "/user/new", {"user_id": "ishaan@example.com", "user_email": "ishaan@example.com",
                               "max_budget": 5, "auto_create_key": False})
assert user["user_id"] == "ishaan@example.com"
gen = ok("POST", "/key/generate", {
    "models": ["demo"], "duration": "30d", "key_alias": "research-key", "team_id": team_id,
    "user_id": "ishaan@example.com", "max_budget": 1.5, "metadata": {"app": "notebook"},
    "tpm_limit": 100000, "rpm_limit": 1000,
})
key = gen["key"]
assert key.startswith("sk-") and gen["expires"] and gen["key_name"].startswith("sk-...")

# Use it with the official SDK, with a customer id.
client = openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)
resp = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hello there"}], user="acme-corp")
assert resp.choices[0].message.content
text = ""
for chunk in client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "stream please"}],
                                            stream=True, stream_options={"include_usage": True}, user="acme-corp"):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
assert text

# Models outside the key are refused.
try:
    client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a model outside the key must be refused")
except openai.PermissionDeniedError:
    pass

# Spend shows up in /spend/logs, /key/info and the global reports. Rows and
# the key's spend are written in one transaction per batch: once both rows
# are there, the key's spend is their sum (the two calls may land in two
# batches, so wait for the rows first).
logs = wait_for("two spend logs", lambda: (lambda l: l if len(l) == 2 else None)(ok("GET", f"/spend/logs?api_key={key}")))
info = ok("GET", f"/key/info?key={key}")
assert info["key"] == key and info["info"]["key_alias"] == "research-key"
assert info["info"]["metadata"] == {"app": "notebook"}
spend = info["info"]["spend"]
assert spend > 0
assert abs(sum(l["spend"] for l in logs) - spend) < 1e-12, (logs, spend)
assert all(l["end_user"] == "acme-corp" and l["model_group"] == "demo" and l["team_id"] == team_id for l in logs)
assert all(key not in json.dumps(l) and l["api_key"] == gen["key_name"] for l in logs)
assert ok("GET", "/global/spend")["spend"] >= spend
top = ok("GET", "/global/spend/keys?limit=5")
assert any(k["key_alias"] == "research-key" and abs(k["total_spend"] - spend) < 1e-12 for k in top), top
models = ok("GET", "/global/spend/models?limit=5")
assert models[0]["model"] == "demo", models
teams = ok("GET", "/global/spend/teams")
assert teams["total_spend_per_team"][0]["team_id"] == "Research", teams
customer = ok("GET", "/customer/info?end_user_id=acme-corp")
assert abs(customer["spend"] - spend) < 1e-12, customer
team_info = ok("GET", f"/team/info?team_id={team_id}")
assert abs(team_info["team_info"]["spend"] - spend) < 1e-12 and team_info["keys"][0]["key_alias"] == "research-key"
user_info = ok("GET", "/user/info?user_id=ishaan@example.com")
assert abs(user_info["user_info"]["spend"] - spend) < 1e-12

# Update, block, unblock, list, delete.
upd = ok("POST", "/key/update", {"key": key, "max_budget": 2.5, "metadata": {"app": "prod"}})
assert upd["max_budget"] == 2.5
ok("POST", "/key/block", {"key": key})
try:
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a blocked key must be refused")
except openai.AuthenticationError:
    pass
ok("POST", "/key/unblock", {"key": key})
client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "back"}])
listed = ok("GET", "/key/list?return_full_object=true")
assert any(k["key_alias"] == "research-key" for k in listed["keys"]), listed
# The key's user is an internal_user: it may make keys for itself, never
# with more than its own key has.
child = ok("POST", "/key/generate", {"key_alias": "child"}, key=key)
assert child["user_id"] == "ishaan@example.com" and child["models"] == ["demo"] and child["max_budget"] == 2.5
for escalation in ({"max_budget": 100}, {"models": ["other"]}, {"user_id": "someone-else"}):
    status, err = api("POST", "/key/generate", escalation, key=key)
    assert status == 403 and err["error"]["type"] == "permission_error", (escalation, status, err)
status, err = api("POST", "/team/new", {"team_alias": "mine"}, key=key)
assert status == 403, (status, err)
deleted = ok("POST", "/key/delete", {"keys": [key, child["key"]]})
assert deleted["deleted_keys"] == [key, child["key"]]
try:
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a deleted key must be refused")
except openai.AuthenticationError:
    pass

print("ok keys_litellm")
