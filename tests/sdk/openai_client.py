"""Drives bkvy with the official `openai` Python package, the way applications do.

Usage: python openai_client.py BASE_URL
Checks a plain completion, a streamed one, tool calls (plain and streamed, on every
provider kind), JSON mode, a refused tool definition and an unknown model, each through
the SDK's own types and exceptions. Exits non-zero on the first failed check.
"""

import json
import sys

import openai
from openai import OpenAI


def main(base_url: str) -> None:
    client = OpenAI(base_url=base_url, api_key="sdk-test-client", max_retries=0, timeout=30)

    # A plain completion.
    resp = client.chat.completions.create(
        model="low",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is 2+2?"}],
        max_tokens=50,
    )
    assert resp.object == "chat.completion", resp
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content.endswith("What is 2+2?"), resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers.get("x-bkvy-provider") == "openai", dict(raw.headers)
    assert raw.parse().model == "gpt-4o"

    # A streamed completion with the final usage chunk.
    text, usage, finish = "", None, None
    stream = client.chat.completions.create(
        model="scenario:support",
        messages=[{"role": "user", "content": "stream this answer please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    assert text == "[claude-haiku] stream this answer please", text
    assert finish == "stop", finish
    assert usage is not None and usage.total_tokens > 0, usage

    # Tool calls, on every provider kind: the model asks for the tool, the client runs it
    # and sends the result back (the assistant message from the SDK object, as apps do),
    # and the model answers with the result.
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]},
        },
    }
    for model in ["openai/gpt-4o-mini", "anthropic/claude-haiku", "gemini/gemini-2.5-flash",
                  "ollama/llama3.2:3b", "vllm/qwen3"]:
        messages = [{"role": "user", "content": "Paris"}]
        first = client.chat.completions.create(model=model, messages=messages, tools=[weather])
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls", (model, first)
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather", (model, call)
        assert json.loads(call.function.arguments) == {"city": "Paris"}, (model, call)
        assert call.id, (model, call)
        messages.append(choice.message)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"})
        second = client.chat.completions.create(model=model, messages=messages, tools=[weather])
        assert second.choices[0].finish_reason == "stop", (model, second)
        assert second.choices[0].message.content.endswith("22 C and sunny"), (model, second)

    # A streamed tool call, assembled from the SDK's chunk deltas.
    calls = {}
    finish = None
    for chunk in client.chat.completions.create(
            model="anthropic/claude-haiku", messages=[{"role": "user", "content": "Oslo"}],
            tools=[weather], tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True):
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                if d.id:
                    entry["id"] = d.id
                if d.function and d.function.name:
                    entry["name"] += d.function.name
                if d.function and d.function.arguments:
                    entry["arguments"] += d.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    assert finish == "tool_calls", finish
    assert list(calls) == [0] and calls[0]["name"] == "get_weather" and calls[0]["id"], calls
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}, calls

    # JSON mode and a JSON schema.
    resp = client.chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "as json"}],
        response_format={"type": "json_object"})
    assert isinstance(json.loads(resp.choices[0].message.content), dict), resp
    resp = client.chat.completions.create(
        model="anthropic/claude-haiku", messages=[{"role": "user", "content": "as json"}],
        response_format={"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                         "required": ["ok"], "additionalProperties": False}}})
    assert json.loads(resp.choices[0].message.content) == {"ok": True}, resp

    # A bad tool definition: OpenAI's 400 shape, raised as the SDK's BadRequestError.
    try:
        client.chat.completions.create(
            model="low",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": {"name": "no spaces allowed"}}],
        )
        raise AssertionError("an invalid tool name was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.body["param"] == "tools", e.body

    # An error: unknown model → NotFoundError with OpenAI's error body.
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404
        assert e.body["code"] == "model_not_found", e.body

    # The model list.
    ids = [m.id for m in client.models.list()]
    assert "low" in ids and "scenario:support" in ids, ids
    print("openai SDK checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
