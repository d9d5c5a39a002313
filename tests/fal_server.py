"""A local HTTP server that speaks FAL's queue protocol, for tests and demos.

The real fal-client talks to it (``FAL_BASE_URL_OVERRIDE`` points the client's four hosts at
its path prefixes). It serves storage uploads, submit, status (queue position, logs with
percentages), result, cancel and the output files, and it can inject faults, one per call, per
operation: ``server.fail("submit", "500", "ok", ...)``.

Faults: ``500``/``503`` (error answer), ``429`` (with Retry-After), ``422`` (validation detail),
``hang`` (answer after ``hang_seconds``), ``slow`` (answer after 0.3 s), ``reset`` (close the
connection without answering), ``reset_after_accept`` (submit only: create the request, then
reset), ``malformed`` (unreadable JSON), ``missing_mesh`` (result without a model), ``fail``
(status/result: the request ends in an upstream error), ``oversize`` and ``not_glb`` (blob).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import trimesh
from PIL import Image


def _sample_glb() -> bytes:
    return trimesh.creation.box(extents=(1, 1, 1)).export(file_type="glb")


def _sample_webp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(buffer, "WEBP")
    return buffer.getvalue()


SAMPLE_GLB = _sample_glb()
SAMPLE_WEBP = _sample_webp()


@dataclass
class FakeRequest:
    id: str
    endpoint: str
    body: dict
    owner_alias: str
    queue_steps: int
    progress: list[int]
    polls: int = 0
    canceled: bool = False
    failed: bool = False

    def state(self) -> tuple[str, dict]:
        """Each status call moves the request on: queue positions, then progress, then done."""
        if self.canceled:
            return "COMPLETED", {"error": "Request cancelled", "error_type": "request_cancelled"}
        if self.failed:
            return "COMPLETED", {"error": "Runner crashed", "error_type": "runner_disconnected"}
        step = self.polls
        self.polls += 1
        if step < self.queue_steps:
            return "IN_QUEUE", {"queue_position": self.queue_steps - step - 1}
        step -= self.queue_steps
        if step < len(self.progress):
            percent = self.progress[step]
            logs = [
                {
                    "message": f"Generating mesh: progress {percent}%",
                    "level": "INFO",
                    "source": "user",
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ]
            return "IN_PROGRESS", {"logs": logs}
        return "COMPLETED", {"logs": [], "metrics": {"inference_time": 0.1}}


@dataclass
class FakeFal:
    """State shared by the handler threads. Tests read ``submits`` and ``cancels``."""

    base: str = ""
    queue_steps: int = 2
    progress: list[int] = field(default_factory=lambda: [25, 50, 75])
    hang_seconds: float = 3.0
    retry_after_seconds: int = 7
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: dict[str, FakeRequest] = field(default_factory=dict)
    submits: list[FakeRequest] = field(default_factory=list)  # accepted submits only
    submit_attempts: int = 0
    cancels: list[str] = field(default_factory=list)
    faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, operation: str, *faults: str) -> None:
        self.faults[operation].extend(faults)

    def next_fault(self, operation: str) -> str:
        with self.lock:
            queue = self.faults[operation]
            return queue.popleft() if queue else "ok"

    def submits_for(self, endpoint: str) -> list[FakeRequest]:
        return [request for request in self.submits if request.endpoint == endpoint]


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-fal/1"
    protocol_version = "HTTP/1.1"

    @property
    def fal(self) -> FakeFal:
        return self.server.fal  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # quiet
        pass

    # --- plumbing ------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload=None, *, raw: bytes | None = None, headers=None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if raw is None else "application/octet-stream"
        )
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        # SO_LINGER 0: close with a TCP reset, as a dropped connection would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _fault(self, operation: str) -> str | None:
        """Apply a generic fault; returns the fault name when the caller must act on it."""
        fault = self.fal.next_fault(operation)
        if fault == "hang":
            time.sleep(self.fal.hang_seconds)
            fault = "ok"
        elif fault == "slow":
            time.sleep(0.3)
            fault = "ok"
        if fault in {"500", "503"}:
            self._send(int(fault), {"detail": "Internal error", "error_type": "internal"})
        elif fault == "429":
            self._send(
                429,
                {"detail": "Too many requests"},
                headers={"Retry-After": str(self.fal.retry_after_seconds)},
            )
        elif fault == "422":
            detail = [
                {
                    "loc": ["body", "image_url"],
                    "msg": "image could not be decoded",
                    "type": "value_error",
                }
            ]
            self._send(422, {"detail": detail})
        elif fault == "reset":
            self._reset()
        elif fault == "malformed":
            self._send(200, raw=b"{not json")
        else:
            return fault
        return None

    # --- routes --------------------------------------------------------------------------------

    def do_POST(self):
        path = urlparse(self.path).path
        body = self._body()
        if path.startswith("/rest/storage/auth/token"):
            expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            self._send(
                200,
                {
                    "token": "cdn-token",
                    "token_type": "Bearer",
                    "base_url": f"{self.fal.base}/cdn",
                    "expires_at": expires,
                },
            )
        elif path == "/cdn/files/upload":
            if self._fault("upload") is None:
                return
            name = f"{uuid.uuid4().hex}-{self.headers.get('X-Fal-File-Name', 'upload.bin')}"
            self.fal.blobs[name] = body
            self._send(200, {"access_url": f"{self.fal.base}/blob/{name}"})
        elif path.startswith("/queue/"):
            self._submit(path.removeprefix("/queue/"), body)
        else:
            self._send(404, {"detail": "Not found"})

    def _submit(self, endpoint: str, body: bytes) -> None:
        with self.fal.lock:
            self.fal.submit_attempts += 1
        fault = self._fault("submit")
        if fault is None:
            return
        parts = endpoint.split("/")
        request = FakeRequest(
            id=str(uuid.uuid4()),
            endpoint=endpoint,
            body=json.loads(body),
            owner_alias="/".join(parts[:2]),
            queue_steps=self.fal.queue_steps,
            progress=list(self.fal.progress),
        )
        with self.fal.lock:
            self.fal.requests[request.id] = request
            self.fal.submits.append(request)
        if fault == "reset_after_accept":
            self._reset()
            return
        base = f"{self.fal.base}/queue/{request.owner_alias}/requests/{request.id}"
        self._send(
            200,
            {
                "status": "IN_QUEUE",
                "request_id": request.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": request.queue_steps,
            },
        )

    def do_GET(self):
        parsed = urlparse(self.path)
        path = parsed.path
        if path.startswith("/blob/"):
            self._blob(path.removeprefix("/blob/"))
            return
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[0] == "queue" and parts[3] == "requests":
            request = self.fal.requests.get(parts[4])
            if request is None:
                self._send(404, {"detail": "Request not found"})
            elif parts[-1] == "status":
                self._status(request, parse_qs(parsed.query))
            else:
                self._result(request)
            return
        self._send(404, {"detail": "Not found"})

    def _status(self, request: FakeRequest, query) -> None:
        fault = self._fault("status")
        if fault is None:
            return
        if fault == "fail":
            request.failed = True
        status, extra = request.state()
        logs_wanted = query.get("logs", ["false"])[0] in {"1", "true"}
        payload = {"status": status, "request_id": request.id, **extra}
        if status != "IN_QUEUE":
            payload.setdefault("logs", None)
            if not logs_wanted:
                payload["logs"] = None
        self._send(200 if status == "COMPLETED" else 202, payload)

    def _result(self, request: FakeRequest) -> None:
        fault = self._fault("result")
        if fault is None:
            return
        if request.canceled:
            self._send(400, {"detail": "Request was cancelled", "error_type": "request_cancelled"})
            return
        if request.failed or fault == "fail":
            self._send(
                500,
                {"detail": "Runner crashed", "error_type": "runner_disconnected"},
                headers={"x-fal-request-id": request.id},
            )
            return
        mesh = {
            "url": f"{self.fal.base}/blob/model-{request.id}.glb",
            "content_type": "model/gltf-binary",
            "file_name": "model.glb",
            "file_size": len(SAMPLE_GLB),
        }
        preview = {
            "url": f"{self.fal.base}/blob/preview-{request.id}.webp",
            "content_type": "image/webp",
            "file_size": len(SAMPLE_WEBP),
        }
        result = {"task_id": f"task-{request.id}", "rendered_image": preview}
        if fault != "missing_mesh":
            key = "model_glb" if request.endpoint.endswith("trellis-2") else "model_mesh"
            result[key] = mesh
        self._send(200, result)

    def _blob(self, name: str) -> None:
        fault = self._fault("blob")
        if fault is None:
            return
        if fault == "oversize":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"glTF" + b"\0" * 1024)
            self._reset()
            return
        if fault == "not_glb":
            self._send(200, raw=b"<html>not a model</html>")
            return
        if name.startswith("model-"):
            self._send(200, raw=SAMPLE_GLB)
        elif name.startswith("preview-"):
            self._send(200, raw=SAMPLE_WEBP)
        elif name in self.fal.blobs:
            self._send(200, raw=self.fal.blobs[name])
        else:
            self._send(404, {"detail": "No such file"})

    def do_PUT(self):
        parts = urlparse(self.path).path.strip("/").split("/")
        self._body()
        if len(parts) >= 6 and parts[0] == "queue" and parts[-1] == "cancel":
            request = self.fal.requests.get(parts[4])
            if request is None:
                self._send(404, {"detail": "Request not found"})
                return
            self.fal.cancels.append(request.id)
            if request.polls >= request.queue_steps + len(request.progress):
                self._send(400, {"status": "ALREADY_COMPLETED"})
                return
            request.canceled = True
            self._send(202, {"status": "CANCELLATION_REQUESTED"})
            return
        self._send(404, {"detail": "Not found"})


class FakeFalServer:
    """Runs the fake on a free port in a thread; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.fal = FakeFal(base=f"http://127.0.0.1:{self.httpd.server_address[1]}")
        self.httpd.fal = self.fal  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return self.fal.base

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # a fake FAL for manual runs: FAL_BASE_URL_OVERRIDE=<printed URL>
    server = FakeFalServer()
    print(server.base, flush=True)
    server.thread.join()
