"""Drives one provider through the tollgate proxy with the official `openai` SDK.

    provider_e2e.py '<json list of cases>'

Environment: TOLLGATE_BASE_URL, TOLLGATE_KEY. Cases run in order (a test's
mock upstream answers them in that order). Each case is an object:

    {"kind": "text", "model": "m", "expect_text": "…"}                  # exact content
    {"kind": "text", "model": "m", "expect_contains": "…"}
    {"kind": "stream", "model": "m", "expect_text": "…", "usage": true} # streamed, joined
    {"kind": "tools", "model": "m", "expect_tool": "name", "expect_args": {…}}
    {"kind": "stream_tools", "model": "m", "expect_tool": "name", "expect_args": {…}}
    {"kind": "image", "model": "m", "image_url": "data:…", "expect_contains": "…"}
    {"kind": "error", "model": "m", "expect_status": 401, "stream": false}
    {"kind": "stream_error", "model": "m", "expect_contains": "…"}       # fails mid-stream
    {"kind": "embeddings", "model": "m", "input": ["a"], "expect_count": 1}
        # optional "encoding_format": "float" (default) | "base64" | null or
        # "sdk_default" (the SDK's own default: it asks for base64 and decodes it),
        # "expect_dims": 3072, "expect_first": [floats] (first vector's start)

Optional on every case: "messages" (default: one user message), "extra_body",
"max_tokens", "stream" (errors only). Exits non-zero on the first failure.
"""
import json
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["TOLLGATE_BASE_URL"] + "/v1", api_key=os.environ["TOLLGATE_KEY"], max_retries=0)
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def fail(case, what):
    print(f"FAILED case {json.dumps(case)}: {what}", file=sys.stderr)
    sys.exit(1)


def messages(case, default="Hello"):
    return case.get("messages") or [{"role": "user", "content": default}]


def kwargs(case):
    k = {}
    if "extra_body" in case:
        k["extra_body"] = case["extra_body"]
    if "max_tokens" in case:
        k["max_tokens"] = case["max_tokens"]
    if case.get("tools", False):
        k["tools"] = case["tools"] if isinstance(case["tools"], list) else TOOLS
    return k


def check_text(case, text):
    if "expect_text" in case and text != case["expect_text"]:
        fail(case, f"text {text!r}")
    if "expect_contains" in case and case["expect_contains"] not in (text or ""):
        fail(case, f"text {text!r}")


def check_tool(case, name, args):
    if name != case["expect_tool"]:
        fail(case, f"tool name {name!r}")
    if "expect_args" in case and json.loads(args) != case["expect_args"]:
        fail(case, f"tool args {args!r}")


def run(case):
    kind = case["kind"]
    model = case["model"]
    if kind == "text":
        r = client.chat.completions.create(model=model, messages=messages(case), **kwargs(case))
        check_text(case, r.choices[0].message.content)
        if r.usage is None or r.usage.total_tokens != r.usage.prompt_tokens + r.usage.completion_tokens:
            fail(case, f"usage {r.usage}")
        if r.model != model:
            fail(case, f"model {r.model}")
    elif kind == "stream":
        text, usage, finish = "", None, None
        extra = {"stream_options": {"include_usage": True}} if case.get("usage") else {}
        for chunk in client.chat.completions.create(model=model, messages=messages(case), stream=True, **extra, **kwargs(case)):
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        check_text(case, text)
        if finish is None:
            fail(case, "no finish_reason")
        if case.get("usage") and (usage is None or usage.completion_tokens <= 0):
            fail(case, f"usage {usage}")
    elif kind == "tools":
        r = client.chat.completions.create(model=model, messages=messages(case, "Weather in Paris?"), tools=TOOLS, **kwargs(case))
        calls = r.choices[0].message.tool_calls or []
        if not calls:
            fail(case, "no tool call")
        if r.choices[0].finish_reason != "tool_calls":
            fail(case, f"finish_reason {r.choices[0].finish_reason}")
        if not calls[0].id:
            fail(case, "tool call without id")
        check_tool(case, calls[0].function.name, calls[0].function.arguments)
    elif kind == "stream_tools":
        with client.chat.completions.stream(model=model, messages=messages(case, "Weather in Paris?"), tools=TOOLS, **kwargs(case)) as s:
            final = s.get_final_completion()
        calls = final.choices[0].message.tool_calls or []
        if not calls:
            fail(case, "no streamed tool call")
        if not calls[0].id:
            fail(case, "streamed tool call without id")
        check_tool(case, calls[0].function.name, calls[0].function.arguments)
    elif kind == "image":
        content = [{"type": "text", "text": "What is in this image?"}, {"type": "image_url", "image_url": {"url": case["image_url"]}}]
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kwargs(case))
        check_text(case, r.choices[0].message.content)
    elif kind == "error":
        try:
            if case.get("stream"):
                list(client.chat.completions.create(model=model, messages=messages(case), stream=True, **kwargs(case)))
            else:
                client.chat.completions.create(model=model, messages=messages(case), **kwargs(case))
        except openai.APIStatusError as err:
            if err.status_code != case["expect_status"]:
                fail(case, f"status {err.status_code}: {err.body}")
            if "expect_type" in case and (err.body or {}).get("type") != case["expect_type"]:
                fail(case, f"type in {err.body}")
            return
        fail(case, "no error raised")
    elif kind == "stream_error":
        text = ""
        try:
            for chunk in client.chat.completions.create(model=model, messages=messages(case), stream=True, **kwargs(case)):
                for c in chunk.choices:
                    text += c.delta.content or ""
        except openai.APIError as err:
            if case.get("expect_contains", "") not in str(err.message):
                fail(case, f"error message {err.message!r}")
            if "expect_text" in case and text != case["expect_text"]:
                fail(case, f"text before the error {text!r}")
            return
        fail(case, "no error raised")
    elif kind == "embeddings":
        fmt = case.get("encoding_format", "float")
        extra = {} if fmt is None or fmt == "sdk_default" else {"encoding_format": fmt}
        r = client.embeddings.create(model=model, input=case["input"], **extra)
        if len(r.data) != case["expect_count"] or not r.data[0].embedding:
            fail(case, f"embeddings {len(r.data)}")
        if "expect_dims" in case and len(r.data[0].embedding) != case["expect_dims"]:
            fail(case, f"dimensions {len(r.data[0].embedding)}")
        want = case.get("expect_first", [])
        got = r.data[0].embedding[: len(want)]
        if any(abs(a - b) > 1e-6 for a, b in zip(got, want)) or len(got) != len(want):
            fail(case, f"first embedding starts {got}")
    else:
        fail(case, "unknown kind")


cases = json.loads(sys.argv[1])
for case in cases:
    run(case)
print(f"ok {len(cases)} cases")
