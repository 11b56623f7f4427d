"""Writes the hand-made seeds each fuzz target starts from (corpus/<target>/seed-*).

Run from fuzz/: python3 seeds/make.py. The committed corpus is these seeds
plus what the long run found, minimised (see docs/fuzzing.md).
"""
import json
import os

def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
openai = {
    "plain": {"model": "switchyard/auto", "messages": [{"role": "user", "content": "Hello"}]},
    "full": {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "tools": [tool], "tool_choice": "auto", "parallel_tool_calls": True,
        "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\n"], "seed": 7,
        "stream": True, "stream_options": {"include_usage": True},
        "user": "u1", "metadata": {"team": "a"}, "reasoning_effort": "low"},
    "json_schema": {"model": "switchyard/auto", "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True,
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
        "models": ["a", "b"], "max_completion_tokens": 20},
}
for k, v in openai.items():
    put("openai_body", k, json.dumps(v))

anthropic = {
    "plain": {"model": "switchyard/auto", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]},
    "full": {"model": "claude-3-5-haiku", "max_tokens": 256, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}, "temperature": 0.2, "top_k": 5, "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "metadata": {"user_id": "u1"}, "stream": True},
}
for k, v in anthropic.items():
    put("anthropic_body", k, json.dumps(v))

# Protobuf, encoded by hand (field numbers from proto/switchyard/v1/router.proto).
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
def field(num, payload):
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload

message = field(1, "user") + field(2, "What is 2+2?")
route = field(1, message) + field(2, "team-a")
put("grpc_request", "route", b"\x00" + route)
put("grpc_request", "complete", b"\x01" + field(1, route) + field(2, "gpt-4o-mini") + field(3, 50))
put("grpc_request", "feedback", b"\x02" + field(1, "0190c2a4-0000-7000-8000-000000000000") + varint(2 << 3 | 1) + b"\x00" * 7 + b"\x3f")

answers = {
    0: {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1},
                  "completion_tokens_details": {"reasoning_tokens": 1}}},
    1: {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 2,
            "cache_read_input_tokens": 1, "cache_creation_input_tokens": 1}},
    2: {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"},
            {"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 1}},
}
for k, v in answers.items():
    put("provider_answer", str(k), bytes([k]) + json.dumps(v).encode())

def sse(events):
    out = ""
    for name, data in events:
        if name:
            out += f"event: {name}\n"
        out += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
    return out.encode()

streams = {
    0: sse([(None, {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "He"}}]}),
            (None, {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]}}]}),
            (None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            (None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
            (None, "[DONE]")]),
    1: sse([("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":1}"}}),
            ("ping", {"type": "ping"}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            ("message_stop", {"type": "message_stop"})]),
    2: sse([(None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}),
            (None, {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                                    "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})]),
}
for k, v in streams.items():
    for cut in (0, 7, 63):
        put("provider_stream", f"{k}-{cut}", bytes([k, cut]) + v)

for name in ("default", "mock", "mock-script", "llmrouter"):
    with open(f"../config/{name}.toml", "rb") as f:
        put("config_file", name, f.read())

models = json.dumps({"models": [{"name": "a", "input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.2},
                                {"name": "b", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}]})
rows = "\n".join(json.dumps({"id": f"r{i}", "prompt": p, "task": "qa", "outcomes": {
    "a": {"quality": 0.5, "cost_usd": 0.001}, "b": {"quality": 1.0, "cost_usd": 0.01}}})
    for i, p in enumerate(["What is 2+2?", "Write a sonnet."]))
put("outcomes_dataset", "two", models + "\0" + rows)
