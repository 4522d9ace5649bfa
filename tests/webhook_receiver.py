"""A webhook receiver as a user would write one for MLflow: a thread with ``http.server`` on 127.0.0.1.

It checks every request the way MLflow documents for receivers, independently of the sender's
code: ``X-MLflow-Signature`` must be ``v1,`` + base64(HMAC-SHA256(secret,
"{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{raw body}")) and the timestamp within five minutes.
It can be stopped and started again on the same port (a receiver that is down for a while).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port


def signature_ok(secret: str, delivery_id: str, timestamp: str, body: bytes, signature: str) -> bool:
    """MLflow's receiver-side check of ``X-MLflow-Signature``."""
    if not signature.startswith("v1,"):
        return False
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(signature[3:], expected)


@dataclass
class Delivery:
    """One request the receiver accepted."""

    delivery_id: str
    timestamp: str
    signed: bool
    body: dict[str, Any]

    @property
    def event(self) -> str:
        return f"{self.body['entity']}.{self.body['action']}"

    @property
    def data(self) -> dict[str, Any]:
        return self.body["data"]


class Receiver:
    """Records every delivery it accepts (2xx); answers ``status`` (e.g. 500) while one is set."""

    def __init__(self, secret: str, port: int | None = None):
        self.secret = secret
        self.port = port or free_port()
        self.deliveries: list[Delivery] = []
        self.refused: list[str] = []  # bad signatures or stale timestamps
        self.status = 200
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery_id = self.headers.get("X-MLflow-Delivery-Id", "")
                timestamp = self.headers.get("X-MLflow-Timestamp", "")
                signed = signature_ok(receiver.secret, delivery_id, timestamp, body,
                                      self.headers.get("X-MLflow-Signature", ""))
                fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
                with receiver.lock:
                    status = receiver.status
                    if not (signed and fresh):
                        receiver.refused.append(delivery_id)
                        status = 401
                    elif 200 <= status < 300:
                        receiver.deliveries.append(Delivery(delivery_id, timestamp, signed, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        """Wait until at least ``count`` deliveries arrived; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{len(self.received())} deliveries after {timeout} s, expected {count}: "
                             f"{[(d.event, d.data) for d in self.received()]}")
