"""Tool calling and structured outputs through Switchyard with the official
`openai` SDK, unchanged, over each of the three upstream protocols (the mock
plays OpenAI, Anthropic and Gemini): a full tool round trip, plain and
streamed, `parse()` into a Pydantic model, an image, and routing that sends
tools, JSON and images only to models that declare them."""

import json

import openai
import pytest
from pydantic import BaseModel

from harness import CATALOG, PNG, PROTOCOL_MODELS, serving

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                        "n": {"type": "integer"}},
                       "required": ["query"]},
    },
}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("tools"), CATALOG) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def ask():
    return [{"role": "system", "content": "Use tools."},
            {"role": "user", "content": "weather in Paris"}]


def answer_call(messages, message, call):
    """What an agent does: keep the assistant turn, append the tool's result."""
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"temp_c": 21})})
    return messages


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_tool_round_trip(client, model):
    messages = ask()
    r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "weather in Paris", "n": 0}

    r = client.chat.completions.create(
        model=model, messages=answer_call(messages, choice.message, call), tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert "tool said:" in choice.message.content and "21" in choice.message.content


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_streamed_tool_round_trip(client, model):
    messages = ask()
    chunks = list(client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, stream=True))
    pieces = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert pieces, "no tool-call deltas"
    # OpenAI's shape: the first piece has index, id, type and name; the rest
    # only add to the arguments.
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function.name == "get_weather"
    assert all(p.index == 0 and p.id is None and p.function.name is None for p in rest)
    arguments = "".join(p.function.arguments or "" for p in pieces)
    assert json.loads(arguments) == {"query": "weather in Paris", "n": 0}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    # The SDK's own accumulator makes the same message a plain answer has.
    with client.chat.completions.stream(model=model, messages=messages, tools=TOOLS) as s:
        final = s.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id
    stream = client.chat.completions.create(
        model=model, messages=answer_call(messages, final.choices[0].message, call),
        tools=TOOLS, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "tool said:" in text and "21" in text


def test_auto_routes_tools_only_to_models_that_declare_them(client):
    r = client.chat.completions.create(model="switchyard/auto", messages=ask())
    assert r.model == "plain"
    for _ in range(10):
        r = client.chat.completions.create(model="switchyard/auto", messages=ask(), tools=TOOLS)
        assert r.model in PROTOCOL_MODELS
        assert r.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_errors_are_400s_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="plain", messages=ask(), tools=TOOLS)
    assert e.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gpt", messages=ask(), tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gpt", messages=ask() + [{"role": "tool", "tool_call_id": "call_x",
                                             "content": "orphan"}])
    assert e.value.body["param"] == "messages[2].tool_call_id"


class Weather(BaseModel):
    city: str
    temp_c: int
    tags: list[str]


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_parse_returns_a_pydantic_object(client, model):
    r = client.chat.completions.parse(model=model, messages=ask(), response_format=Weather)
    assert r.choices[0].finish_reason == "stop"
    w = r.choices[0].message.parsed
    assert isinstance(w, Weather)
    assert (w.city, w.temp_c, w.tags) == ("weather in Paris", 0, ["weather in Paris"])


@pytest.mark.parametrize("model", PROTOCOL_MODELS)
def test_json_mode_answers_an_object(client, model):
    r = client.chat.completions.create(model=model, messages=ask(),
                                       response_format={"type": "json_object"})
    # Any object will do; the mock's holds the prompt.
    answer = json.loads(r.choices[0].message.content)
    assert isinstance(answer, dict) and "weather in Paris" in answer.values()


def test_json_goes_only_to_models_that_declare_it(client):
    r = client.chat.completions.parse(model="switchyard/auto", messages=ask(),
                                      response_format=Weather)
    assert r.model in PROTOCOL_MODELS and r.choices[0].message.parsed.city
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.parse(model="plain", messages=ask(), response_format=Weather)
    assert e.value.body["param"] == "response_format"


def test_an_image_reaches_a_vision_model_only(client):
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
    for _ in range(5):
        r = client.chat.completions.create(model="switchyard/auto", messages=messages)
        assert r.model in PROTOCOL_MODELS
        assert r.choices[0].message.content.endswith("what is this? [1 image(s)]")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="plain", messages=messages)
    assert e.value.body["param"] == "messages"
