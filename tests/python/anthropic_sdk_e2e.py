"""Drives tollgate's `/v1/messages` door with the official `anthropic` SDK.

    anthropic_sdk_e2e.py '<json list of cases>'

Environment: TOLLGATE_BASE_URL, TOLLGATE_KEY. Cases run in order (a test's
mock upstreams answer them in that order). Each case is an object:

    {"kind": "create", "model": "m", "expect_text": "…"}                # exact joined text
    {"kind": "create", "model": "m", "expect_contains": "…"}
    {"kind": "stream", "model": "m", "expect_text": "…"}                # messages.stream + get_final_message
    {"kind": "tools", "model": "m", "expect_tool": "name", "expect_args": {…}}
    {"kind": "stream_tools", "model": "m", "expect_tool": "name", "expect_args": {…}}
    {"kind": "image", "model": "m", "expect_contains": "…"}
    {"kind": "count_tokens", "model": "m"}
    {"kind": "error", "model": "m", "expect_status": 429, "expect_type": "rate_limit_error", "stream": false}

Optional on every case: "messages", "system", "max_tokens", "beta" (an
`anthropic-beta` header), "expect_stop"
(stop_reason), "expect_usage" ([input_tokens, output_tokens]),
"expect_thinking" (the thinking text), "expect_signature_prefix" (of the
thinking block's signature), "expect_id" (message id). Exits non-zero on the
first failure.
"""
import json
import os
import sys

import anthropic
from anthropic import Anthropic

client = Anthropic(base_url=os.environ["TOLLGATE_BASE_URL"], api_key=os.environ["TOLLGATE_KEY"], max_retries=0)
TOOLS = [{
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def fail(case, what):
    print(f"FAILED case {json.dumps(case)}: {what}", file=sys.stderr)
    sys.exit(1)


def kwargs(case, default="Hello"):
    k = {
        "model": case["model"],
        "max_tokens": case.get("max_tokens", 256),
        "messages": case.get("messages") or [{"role": "user", "content": default}],
    }
    if "system" in case:
        k["system"] = case["system"]
    if "beta" in case:
        k["extra_headers"] = {"anthropic-beta": case["beta"]}
    return k


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def check_message(case, message):
    if message.type != "message" or message.role != "assistant":
        fail(case, f"not a message: {message}")
    text = text_of(message)
    if "expect_text" in case and text != case["expect_text"]:
        fail(case, f"text {text!r}")
    if "expect_contains" in case and case["expect_contains"] not in text:
        fail(case, f"text {text!r}")
    if "expect_stop" in case and message.stop_reason != case["expect_stop"]:
        fail(case, f"stop_reason {message.stop_reason}")
    if "expect_id" in case and message.id != case["expect_id"]:
        fail(case, f"id {message.id}")
    u = message.usage
    if "expect_usage" in case:
        if [u.input_tokens, u.output_tokens] != case["expect_usage"]:
            fail(case, f"usage {u}")
    elif u.output_tokens <= 0:
        fail(case, f"usage {u}")
    thinking = [b for b in message.content if b.type == "thinking"]
    if "expect_thinking" in case:
        if not thinking or thinking[0].thinking != case["expect_thinking"]:
            fail(case, f"thinking {thinking}")
    if "expect_signature_prefix" in case:
        if not thinking or not thinking[0].signature.startswith(case["expect_signature_prefix"]):
            fail(case, f"signature {thinking}")


def check_tool(case, message):
    calls = [b for b in message.content if b.type == "tool_use"]
    if not calls:
        fail(case, f"no tool_use in {message.content}")
    if message.stop_reason != "tool_use":
        fail(case, f"stop_reason {message.stop_reason}")
    if not calls[0].id:
        fail(case, "tool_use without id")
    if calls[0].name != case["expect_tool"]:
        fail(case, f"tool {calls[0].name}")
    if "expect_args" in case and calls[0].input != case["expect_args"]:
        fail(case, f"input {calls[0].input}")


def run(case):
    kind = case["kind"]
    if kind == "create":
        check_message(case, client.messages.create(**kwargs(case)))
    elif kind == "stream":
        with client.messages.stream(**kwargs(case)) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
        if streamed != text_of(final):
            fail(case, f"streamed {streamed!r} but final {text_of(final)!r}")
        check_message(case, final)
    elif kind == "tools":
        check_tool(case, client.messages.create(tools=TOOLS, **kwargs(case, "Weather in Paris?")))
    elif kind == "stream_tools":
        with client.messages.stream(tools=TOOLS, **kwargs(case, "Weather in Paris?")) as s:
            final = s.get_final_message()
        check_tool(case, final)
    elif kind == "image":
        content = [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        ]
        check_message(case, client.messages.create(**kwargs(dict(case, messages=[{"role": "user", "content": content}]))))
    elif kind == "count_tokens":
        k = kwargs(case)
        del k["max_tokens"]
        r = client.messages.count_tokens(**k)
        if r.input_tokens <= 0:
            fail(case, f"count {r}")
    elif kind == "error":
        try:
            if case.get("stream"):
                with client.messages.stream(**kwargs(case)) as s:
                    s.get_final_message()
            else:
                client.messages.create(**kwargs(case))
        except anthropic.APIStatusError as err:
            if err.status_code != case["expect_status"]:
                fail(case, f"status {err.status_code}: {err.body}")
            got = ((err.body or {}).get("error") or {}).get("type")
            if "expect_type" in case and got != case["expect_type"]:
                fail(case, f"type {got} in {err.body}")
            return
        fail(case, "no error raised")
    else:
        fail(case, "unknown kind")


cases = json.loads(sys.argv[1])
for case in cases:
    run(case)
print(f"ok {len(cases)} cases")
