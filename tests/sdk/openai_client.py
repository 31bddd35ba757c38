"""Drives bkvy with the official `openai` Python package, the way applications do.

Usage: python openai_client.py BASE_URL
Checks a plain completion, a streamed one, a refused tool call and an unknown model, each
through the SDK's own types and exceptions. Exits non-zero on the first failed check.
"""

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

    # A tool call: refused with OpenAI's 400 shape, raised as the SDK's BadRequestError.
    try:
        client.chat.completions.create(
            model="low",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        )
        raise AssertionError("tools were accepted")
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
