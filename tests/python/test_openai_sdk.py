"""The HTTP front seen by the official `openai` Python SDK, unchanged.

The real `switchyard` binary serves over the real mock provider with a
temporary SQLite file; the SDK only gets a `base_url`.
"""

import json
import urllib.request

import openai
import pytest

from harness import serving


CATALOG = """max_request_bytes = 65536
[classifier]
auto_fetch = false
[routing]
policy = "prior"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://{mock}/v1"
[[models]]
name = "small"
provider = "mock"
upstream = "small-1"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.8
context_window = 32000
prior_quality = 0.6
[[models]]
name = "large"
provider = "mock"
upstream = "large-1"
input_usd_per_mtok = 5.0
output_usd_per_mtok = 20.0
context_window = 200000
prior_quality = 0.9
[[models]]
name = "flaky"
provider = "mock"
upstream = "flaky+fail503"
input_usd_per_mtok = 0.0
output_usd_per_mtok = 0.0
context_window = 8000
prior_quality = 0.1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("openai"), CATALOG) as url:
        yield url


@pytest.fixture()
def client(server):
    # No retries: an error must surface as the SDK's exception at once.
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


def test_pinned_non_streaming(client):
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=user("Say hello."), max_tokens=16)
    r = raw.parse()
    assert r.model == "small"
    assert r.choices[0].message.content == "[small-1] Say hello."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    decision = raw.headers["x-switchyard-decision-id"]
    assert r.id == f"chatcmpl-{decision}"


def test_auto_model_with_routing_knobs(client):
    # A huge cost weight makes the cheapest eligible model win.
    r = client.chat.completions.create(
        model="switchyard/auto", messages=user("What is 2 + 2?"),
        extra_body={"switchyard": {"cost_weight": 1e6, "candidates": ["small", "large"],
                                   "tenant": "py"}})
    assert r.model == "small"
    # The same knob from a header; at zero the best prior wins.
    r = client.chat.completions.create(
        model="switchyard/auto", messages=user("What is 2 + 2?"),
        extra_headers={"x-switchyard-cost-weight": "0", "x-switchyard-candidates": "small,large"})
    assert r.model == "large"


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="large", messages=user("one two three"), stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[large-1] one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert {c.model for c in chunks} == {"large"}


def test_streaming_auto(client):
    with client.chat.completions.with_streaming_response.create(
            model="switchyard/auto", messages=user("Stream, please."), stream=True,
            extra_body={"switchyard": {"candidates": ["small"]}}) as resp:
        assert resp.headers["x-switchyard-model"] == "small"
        body = "".join(resp.iter_lines())
    assert body.endswith("data: [DONE]") or "[DONE]" in body


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "switchyard/auto"
    assert {"small", "large", "flaky"} <= set(ids)
    assert client.models.retrieve("large").owned_by == "mock"


def test_errors_map_to_sdk_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=user("hi"))
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="small", messages=user("hi"), n=2)
    assert e.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="small", messages=[])
    assert e.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="small", messages=user("hi"), temperature=5)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="small", messages=user("hi"),
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="small", messages=user("x" * 70000))
    assert e.value.status_code == 413
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="flaky", messages=user("hi"))
    assert e.value.status_code == 503
    with pytest.raises(openai.InternalServerError):
        list(client.chat.completions.create(model="flaky", messages=user("hi"), stream=True))


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_feedback_and_ops(server, client):
    raw = client.chat.completions.with_raw_response.create(model="small", messages=user("hi"))
    decision = raw.headers["x-switchyard-decision-id"]
    fb = {"decision_id": decision, "reward": 0.7, "source": "py"}
    assert post(f"{server}/v1/feedback", fb) == (200, {"decision_id": decision, "source": "py",
                                                      "replaced": False})
    assert post(f"{server}/v1/feedback", fb)[1]["replaced"] is True
    status, body = post(f"{server}/v1/feedback", {**fb, "reward": 2})
    assert status == 400 and body["error"]["code"] == "invalid_value"
    # The SDK's generic POST reaches our extension route too.
    r = client.post("/feedback", body={**fb, "source": "sdk"}, cast_to=object)
    assert r["replaced"] is False

    with urllib.request.urlopen(f"{server}/readyz") as r:
        assert json.load(r)["database"] == "writable"
    with urllib.request.urlopen(f"{server}/metrics") as r:
        text = r.read().decode()
    assert 'switchyard_decisions_total{model="small",pinned="true"}' in text
    assert 'switchyard_feedback_total{source="py",replaced="true"} 1' in text
