"""The official `anthropic` SDK, unchanged, against Switchyard's
`/v1/messages`: plain and streamed answers, a full tool round trip (plain
and streamed) over each of the three upstream protocols, images, routing
with `switchyard/auto`, and Anthropic-shaped errors."""

import json

import anthropic
import pytest

from harness import CATALOG, PNG, PROTOCOL_MODELS, serving

TOOLS = [{
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"},
                                                      "n": {"type": "integer"}},
                     "required": ["query"]},
}]

ASK = [{"role": "user", "content": "weather in Paris"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("messages"), CATALOG) as url:
        yield anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def answer_call(message, call):
    """What an agent does: keep the assistant turn, answer its tool call."""
    return ASK + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": json.dumps({"temp_c": 21})}]},
    ]


@pytest.mark.parametrize("model", PROTOCOL_MODELS + ["plain"])
def test_plain_message(client, model):
    m = client.messages.create(model=model, max_tokens=64, system="Be brief.",
                               messages=[{"role": "user", "content": "Say hello."}])
    assert m.type == "message" and m.role == "assistant" and m.model == model
    assert m.id.startswith("msg_")
    assert m.stop_reason == "end_turn"
    [block] = m.content
    assert block.type == "text" and "Say hello." in block.text
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("model", PROTOCOL_MODELS + ["plain"])
def test_streamed_message(client, model):
    with client.messages.stream(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": "Stream, please."}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert "Stream, please." in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.model == model
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_tool_round_trip(client, model):
    m = client.messages.create(model=model, max_tokens=256, messages=ASK, tools=TOOLS)
    assert m.stop_reason == "tool_use"
    [call] = [b for b in m.content if b.type == "tool_use"]
    assert call.id and call.name == "get_weather"
    assert call.input == {"query": "weather in Paris", "n": 0}

    m = client.messages.create(model=model, max_tokens=256, messages=answer_call(m, call),
                               tools=TOOLS)
    assert m.stop_reason == "end_turn"
    assert not [b for b in m.content if b.type == "tool_use"]
    assert "tool said:" in m.content[0].text and "21" in m.content[0].text


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_streamed_tool_round_trip(client, model):
    with client.messages.stream(model=model, max_tokens=256, messages=ASK, tools=TOOLS) as s:
        events = list(s)
        final = s.get_final_message()
    # The arguments arrive as input_json_delta pieces, put together by the SDK.
    assert any(e.type == "input_json" for e in events)
    assert final.stop_reason == "tool_use"
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"query": "weather in Paris", "n": 0}

    with client.messages.stream(model=model, max_tokens=256, messages=answer_call(final, call),
                                tools=TOOLS) as s:
        text = "".join(s.text_stream)
    assert "tool said:" in text and "21" in text


def test_auto_routes_and_images_reach_vision_models_only(client):
    m = client.messages.create(model="switchyard/auto", max_tokens=64, messages=ASK)
    assert m.model == "plain"
    for _ in range(5):
        m = client.messages.create(model="switchyard/auto", max_tokens=64, messages=ASK,
                                   tools=TOOLS)
        assert m.model in PROTOCOL_MODELS and m.stop_reason == "tool_use"
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]
    for _ in range(5):
        m = client.messages.create(model="switchyard/auto", max_tokens=64, messages=image)
        assert m.model in PROTOCOL_MODELS
        assert m.content[0].text.endswith("what is this? [1 image(s)]")


def test_errors_are_anthropic_shaped(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=8, messages=ASK)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="plain", max_tokens=8, messages=ASK, tools=TOOLS)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "tools" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="gpt", max_tokens=8, messages=ASK,
                               extra_body={"container": "c1"})
    assert "container" in e.value.body["error"]["message"]
