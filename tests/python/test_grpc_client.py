"""The gRPC contract seen from a third-party toolchain (Python grpcio).

Stubs are generated from proto/ at test time; the real `switchyard` binary
serves over the real mock provider, with a temporary SQLite file.
"""

import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

from harness import BIN, ROOT, free_port, wait_port


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    proto_dir = ROOT / "proto"
    rc = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
        str(proto_dir / "switchyard" / "v1" / "router.proto"),
    ])
    assert rc == 0
    sys.path.insert(0, str(out))
    from switchyard.v1 import router_pb2, router_pb2_grpc  # noqa: E402
    return router_pb2, router_pb2_grpc


class Deployment:
    def __init__(self, tmp):
        self.tmp = tmp
        self.mock_port = free_port()
        self.mock = subprocess.Popen(
            [BIN, "mock-provider", "--listen", f"127.0.0.1:{self.mock_port}"],
            stderr=subprocess.DEVNULL)
        wait_port(self.mock_port, self.mock)
        self.config = tmp / "switchyard.toml"
        self.config.write_text(f"""
[server]
database = "{tmp / 'switchyard.db'}"
http_listen = ""
[classifier]
auto_fetch = false
[routing]
policy = "prior"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:{self.mock_port}/v1"
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
""")
        self.server = None

    def start(self):
        self.port = free_port()
        self.server = subprocess.Popen(
            [BIN, "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"],
            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port, self.server)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def stop(self):
        self.channel.close()
        self.server.terminate()
        assert self.server.wait(timeout=20) == 0

    def close(self):
        if self.server and self.server.poll() is None:
            self.server.kill()
        self.mock.terminate()
        self.mock.wait(timeout=10)


@pytest.fixture()
def deployment(tmp_path):
    d = Deployment(tmp_path)
    d.start()
    yield d
    d.close()


def stub(pb, d):
    return pb[1].RouterStub(d.channel)


def route_request(pb, text, **kw):
    m = pb[0]
    return m.RouteRequest(messages=[m.Message(role="user", content=text)], tenant="py", **kw)


def test_health_and_route(pb, deployment):
    health = health_pb2_grpc.HealthStub(deployment.channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service="switchyard.v1.Router"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING

    r = stub(pb, deployment).Route(route_request(pb, "hello", cost_weight=0.0))
    assert r.model == "large"
    assert r.propensity == 1.0
    assert len(r.candidates) == 2
    assert all(c.eligible for c in r.candidates)
    r = stub(pb, deployment).Route(route_request(pb, "hello", cost_weight=1e6))
    assert r.model == "small"


def test_complete_stream_and_feedback(pb, deployment):
    m, s = pb[0], stub(pb, deployment)
    c = s.Complete(m.CompleteRequest(route=route_request(pb, "ping"), model="small", max_tokens=32))
    assert c.content == "[small-1] ping"
    assert c.usage.total_tokens > 0 and c.cost_usd > 0
    assert [a.outcome for a in c.attempts] == ["ok"]

    chunks = list(s.CompleteStream(m.CompleteRequest(route=route_request(pb, "stream me now"), model="large")))
    assert chunks[0].decision_id and chunks[0].model == "large"
    assert "".join(ch.delta for ch in chunks) == "[large-1] stream me now"
    assert chunks[-1].usage.completion_tokens > 0

    first = s.Feedback(m.FeedbackRequest(decision_id=c.decision_id, reward=0.25, source="py"))
    again = s.Feedback(m.FeedbackRequest(decision_id=c.decision_id, reward=0.75, source="py"))
    assert (first.replaced, again.replaced) == (False, True)


def test_bad_inputs(pb, deployment):
    m, s = pb[0], stub(pb, deployment)
    cases = [
        (lambda: s.Route(m.RouteRequest()), grpc.StatusCode.INVALID_ARGUMENT, "messages"),
        (lambda: s.Route(route_request(pb, "x", candidates=["nope"])), grpc.StatusCode.NOT_FOUND, "candidates"),
        (lambda: s.Route(route_request(pb, "x", cost_weight=float("nan"))), grpc.StatusCode.INVALID_ARGUMENT, "cost_weight"),
        (lambda: s.Feedback(m.FeedbackRequest(decision_id="zzz", reward=0.5)), grpc.StatusCode.INVALID_ARGUMENT, "decision_id"),
        (lambda: s.Feedback(m.FeedbackRequest(decision_id="0190b2a4-0000-7000-8000-000000000000", reward=0.5)),
         grpc.StatusCode.NOT_FOUND, "decision_id"),
        (lambda: s.Complete(m.CompleteRequest(route=route_request(pb, "x"), model="gpt-99")), grpc.StatusCode.NOT_FOUND, "model"),
    ]
    for call, code, field in cases:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code, e.value.details()
        assert e.value.details().startswith(field), e.value.details()
    r = s.Route(route_request(pb, "x"))
    with pytest.raises(grpc.RpcError) as e:
        s.Feedback(m.FeedbackRequest(decision_id=r.decision_id, reward=float("nan")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_restart_keeps_decisions_and_feedback(pb, deployment):
    m = pb[0]
    r = stub(pb, deployment).Route(route_request(pb, "persist"))
    stub(pb, deployment).Feedback(m.FeedbackRequest(decision_id=r.decision_id, reward=1.0, source="a"))
    deployment.stop()
    deployment.start()
    again = stub(pb, deployment).Feedback(m.FeedbackRequest(decision_id=r.decision_id, reward=0.0, source="a"))
    assert again.replaced


def test_reflection_lists_and_describes_the_service(deployment):
    # What grpcurl relies on: the server describes itself.
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
    from google.protobuf.descriptor_pool import DescriptorPool

    db = ProtoReflectionDescriptorDatabase(deployment.channel)
    services = set(db.get_services())
    assert {"switchyard.v1.Router", "grpc.health.v1.Health"} <= services
    pool = DescriptorPool(db)
    router = pool.FindServiceByName("switchyard.v1.Router")
    assert {m.name for m in router.methods} == {
        "Route", "Complete", "CompleteStream", "Feedback", "ListModels"}
