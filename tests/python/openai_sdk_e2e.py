"""The official `openai` Python SDK against a running tollgate proxy.

Run by tests/openai_sdk.rs, which starts the proxy and the upstream mocks and
sets TOLLGATE_BASE_URL / TOLLGATE_KEY. Exits non-zero on the first failure.
"""
import os
import sys

import openai
from openai import OpenAI

BASE = os.environ["TOLLGATE_BASE_URL"]
KEY = os.environ["TOLLGATE_KEY"]
DEFAULT_REPLY = "This is a mock response from tollgate."

client = OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    checks += 1


# Chat, non-streamed.
r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello"}])
check(r.choices[0].message.content == DEFAULT_REPLY, f"chat content: {r.choices[0].message.content!r}")
check(r.choices[0].finish_reason == "stop", "finish_reason")
check(r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage")
check(r.model == "demo", "model is the requested name")

# with_raw_response exposes tollgate's headers.
raw = client.chat.completions.with_raw_response.create(model="demo", messages=[{"role": "user", "content": "x"}])
check(raw.headers.get("x-litellm-model-id") is not None, "x-litellm-model-id header")
check(raw.headers.get("x-request-id") is not None, "x-request-id header")

# Streaming, with the usage chunk requested.
text = ""
usage = None
finish = None
for chunk in client.chat.completions.create(
    model="demo",
    messages=[{"role": "user", "content": "Hello"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            text += c.delta.content
        if c.finish_reason:
            finish = c.finish_reason
check(text == DEFAULT_REPLY, f"streamed text: {text!r}")
check(finish == "stop", "streamed finish_reason")
check(usage is not None and usage.completion_tokens > 0, "streamed usage")

# Streaming without usage: no usage chunk reaches the client.
chunks = list(client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], stream=True))
check(all(c.usage is None for c in chunks), "no usage unless asked")

# Tools, from a real recorded OpenAI answer replayed by the upstream mock.
tools = [{
    "type": "function",
    "function": {"name": "GetWeatherArgs", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}]
r = client.chat.completions.create(model="up-json", messages=[{"role": "user", "content": "weather?"}], tools=tools)
call = r.choices[0].message.tool_calls[0]
check(r.choices[0].finish_reason == "tool_calls", "tool finish_reason")
check(call.id == "call_Y6qJ7ofLgOrBnMD5WbVAeiRV", f"tool call id {call.id}")
check(call.function.name == "GetWeatherArgs", "tool name")
check(call.function.arguments == '{"city":"Edinburgh","country":"UK","units":"c"}', "tool arguments")

# Streamed tool calls, assembled by the SDK's own stream helper.
with client.chat.completions.stream(
    model="up-stream", messages=[{"role": "user", "content": "weather?"}], tools=tools
) as stream:
    final = stream.get_final_completion()
call = final.choices[0].message.tool_calls[0]
check(call.id == "call_CTf1nWJLqSeRgDqaCG27xZ74", f"streamed tool id {call.id}")
check(call.function.arguments == '{"city":"San Francisco","state":"CA"}', f"streamed tool args {call.function.arguments}")

# Tool calls from the mock provider via mock_response (LiteLLM's field, in extra_body).
r = client.chat.completions.create(
    model="demo",
    messages=[{"role": "user", "content": "x"}],
    extra_body={"mock_response": {"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}},
)
check(r.choices[0].message.tool_calls[0].function.name == "f", "mock tool call")

# Embeddings: the SDK asks for base64 by default and decodes it.
e = client.embeddings.create(model="demo", input=["alpha", "beta"])
check(len(e.data) == 2 and len(e.data[0].embedding) == 8, f"embeddings {len(e.data)}")
check(e.data[0].embedding != e.data[1].embedding, "distinct embeddings")
f = client.embeddings.create(model="demo", input="alpha", encoding_format="float")
check(f.data[0].embedding == e.data[0].embedding, "float and base64 agree")

# Models.
ids = sorted(m.id for m in client.models.list())
check("demo" in ids and "up-json" in ids, f"models {ids}")
check(client.models.retrieve("demo").id == "demo", "retrieve model")

# Errors map to the SDK's exception classes.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check(False, "NotFoundError expected")
except openai.NotFoundError as err:
    check(err.status_code == 404 and err.code == "model_not_found", f"404 body {err.body}")

try:
    OpenAI(base_url=BASE + "/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "x"}]
    )
    check(False, "AuthenticationError expected")
except openai.AuthenticationError as err:
    check(err.status_code == 401, "401")

try:
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], temperature=7)
    check(False, "BadRequestError expected")
except openai.BadRequestError as err:
    check(err.status_code == 400 and err.param == "temperature", f"400 param {err.body}")

try:
    client.chat.completions.create(model="demo", messages=[])
    check(False, "BadRequestError expected for empty messages")
except openai.BadRequestError as err:
    check(err.param == "messages", "empty messages param")

try:
    client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "x"}], extra_body={"mock_response": "litellm.RateLimitError"}
    )
    check(False, "RateLimitError expected")
except openai.RateLimitError as err:
    check(err.response.headers.get("retry-after") == "1", "retry-after header")

# A stream that fails before its first byte is a normal HTTP error.
try:
    list(client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "x"}], stream=True,
        extra_body={"mock_response": "litellm.ContextWindowExceededError: too long"},
    ))
    check(False, "BadRequestError expected for a failing stream")
except openai.BadRequestError as err:
    check(err.code == "context_length_exceeded", f"context window code {err.body}")

print(f"ok {checks} checks")
