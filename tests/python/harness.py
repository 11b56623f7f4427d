"""What the Python suites share: the binary under test, free ports, and a
mock provider plus a `switchyard serve` over a catalog, on loopback."""

import contextlib
import os
import pathlib
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    until = time.time() + timeout
    while time.time() < until:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


@contextlib.contextmanager
def serving(tmp, catalog, env=None):
    """Serves `catalog` (TOML after [server]; `{mock}` is the mock's
    host:port), with `env` added to the server's environment, and yields
    the HTTP front's base URL."""
    mock_port, grpc_port, http_port = free_port(), free_port(), free_port()
    mock = subprocess.Popen([BIN, "mock-provider", "--listen", f"127.0.0.1:{mock_port}"],
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(mock_port, mock)
        config = tmp / "switchyard.toml"
        config.write_text(f"[server]\ndatabase = \"{tmp / 'switchyard.db'}\"\n"
                          + catalog.replace("{mock}", f"127.0.0.1:{mock_port}"))
        proc = subprocess.Popen(
            [BIN, "serve", "--config", str(config), "--listen", f"127.0.0.1:{grpc_port}",
             "--http-listen", f"127.0.0.1:{http_port}"],
            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn", **(env or {})})
        wait_port(http_port, proc)
        yield f"http://127.0.0.1:{http_port}"
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        mock.terminate()
        mock.wait(timeout=10)


# A catalog over the mock's three protocols (`{mock}` is its host:port): one
# model per protocol that calls tools, sees images and answers JSON, and
# the prior's favourite, which does none of that.
CATALOG = """
[classifier]
auto_fetch = false
[routing]
policy = "prior"
cost_weight = 0.0
[[providers]]
name = "oa"
kind = "openai"
base_url = "http://{mock}/v1"
[[providers]]
name = "an"
kind = "anthropic"
base_url = "http://{mock}/v1"
[[providers]]
name = "ge"
kind = "gemini"
base_url = "http://{mock}/v1beta"
""" + "".join(f"""
[[models]]
name = "{name}"
provider = "{provider}"
upstream = "{name}+toolcall"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 1.0
context_window = 16000
prior_quality = {prior}
capabilities = {caps}
""" for name, provider, prior, caps in [
    ("gpt", "oa", 0.6, '["tools", "json_schema", "vision"]'),
    ("claude", "an", 0.5, '["tools", "json_schema", "vision"]'),
    ("gem", "ge", 0.4, '["tools", "json_schema", "vision"]'),
    # The prior's favourite, without tools: only the need moves a choice off it.
    ("plain", "oa", 0.9, "[]"),
])

PROTOCOL_MODELS = ["gpt", "claude", "gem"]

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
       "AAAABJRU5ErkJggg==")
