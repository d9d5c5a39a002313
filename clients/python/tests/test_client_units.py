"""The client's pure logic, without a server: Retry-After, problem details, SSE frames, and the
retry loop over a fake transport (the live 429 test is in test_client_live.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from image2model_client import (
    Client,
    ConfigurationError,
    Conflict,
    NotFound,
    RateLimited,
    RetryPolicy,
    TransportError,
    Unauthorized,
    ValidationError,
    parse_retry_after,
)
from image2model_client._http import SSEDecoder, normalize_base_url
from image2model_client.errors import ServerError, error_from_response

NOW = datetime(2026, 11, 25, 18, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("37", 37.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def problem(status, code, detail="", **extra):
    body = {
        "type": f"https://image2model.dev/problems/{code.lower()}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": "/api/v2/jobs/x",
        "code": code,
        "request_id": "req-1234",
        **extra,
    }
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def test_problem_details_become_typed_errors():
    error = error_from_response(problem(404, "NOT_FOUND", "No such job."))
    assert isinstance(error, NotFound)
    assert (error.status, error.code, error.detail, error.request_id) == (
        404,
        "NOT_FOUND",
        "No such job.",
        "req-1234",
    )
    assert str(error) == "No such job. (code NOT_FOUND, request id req-1234)"
    assert isinstance(error_from_response(problem(401, "UNAUTHORIZED")), Unauthorized)
    assert isinstance(error_from_response(problem(409, "JOB_NOT_FINISHED")), Conflict)
    assert isinstance(error_from_response(problem(502, "BAD_GATEWAY")), ServerError)

    limited = error_from_response(
        httpx.Response(429, json={"code": "RATE_LIMIT_EXCEEDED"}, headers={"Retry-After": "7"})
    )
    assert isinstance(limited, RateLimited) and limited.retry_after == 7

    invalid = error_from_response(
        problem(
            422,
            "VALIDATION_ERROR",
            "Request validation failed",
            errors=[{"field": "params.face_limit", "message": "too big", "type": "value_error"}],
        )
    )
    assert isinstance(invalid, ValidationError)
    assert [(e.field, e.message) for e in invalid.errors] == [("params.face_limit", "too big")]
    assert "params.face_limit: too big" in str(invalid)


def test_answers_that_are_not_problem_details_still_map():
    html = httpx.Response(
        502, text="<html>Bad gateway</html>", headers={"X-Request-ID": "from-header"}
    )
    error = error_from_response(html)
    assert isinstance(error, ServerError)
    assert error.code == "HTTP_502" and error.detail == "Bad Gateway"
    assert error.request_id == "from-header"
    v1 = httpx.Response(
        404,
        json={
            "error": True,
            "error_code": "HTTP_404",
            "message": "File not found",
            "status_code": 404,
            "details": {},
        },
    )
    assert isinstance(error_from_response(v1), NotFound)
    assert error_from_response(v1).detail == "File not found"


def test_sse_frames_are_decoded_and_the_last_id_kept():
    decoder = SSEDecoder()
    lines = [
        ": a comment",
        "id: 7",
        "event: file_update",
        'data: {"job_id": "j", "progress": 36}',
        "",
        "event: heartbeat",
        'data: {"status": "heartbeat"}',
        "",
        "id: 7.1",
        "event: task_progress",
        "data: {",
        'data: "progress": 40}',
        "",
        "id: 8",
        "event: file_update",
        "data: {",
    ]
    events = list(decoder.feed_lines(lines))
    assert [(e.name, e.id) for e in events] == [
        ("file_update", "7"),
        ("heartbeat", None),
        ("task_progress", "7.1"),
    ]
    assert events[0].data == {"job_id": "j", "progress": 36}
    assert events[2].data == {"progress": 40}
    assert decoder.last_event_id == "7.1"  # the half-received event 8 does not count
    decoder.reset_frame()
    assert decoder.feed("") is None


def test_base_urls_are_normalized_and_required(monkeypatch):
    monkeypatch.delenv("IMAGE2MODEL_URL", raising=False)
    assert normalize_base_url("http://h:1/") == "http://h:1"
    assert normalize_base_url("http://h:1/api/v2/") == "http://h:1"
    assert normalize_base_url("https://h/prefix/api") == "https://h/prefix"
    with pytest.raises(ConfigurationError):
        normalize_base_url(None)
    with pytest.raises(ConfigurationError):
        normalize_base_url("h:1")
    monkeypatch.setenv("IMAGE2MODEL_URL", "http://from-env:8000")
    assert normalize_base_url(None) == "http://from-env:8000"


class Script:
    """A fake transport answering from a list, recording each request."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def fake_client(script, **kw):
    sleeps = []
    client = Client(
        "http://fake",
        "i2m_fake",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **kw,
    )
    return client, sleeps


def generators_ok():
    return httpx.Response(200, json=[{"id": "relief", "name": "Relief", "params": []}])


def test_429_and_503_are_retried_after_retry_after():
    script = Script(
        httpx.Response(429, json={"code": "RATE_LIMIT_EXCEEDED"}, headers={"Retry-After": "3"}),
        httpx.Response(503, json={"code": "GENERATION_UNAVAILABLE"}, headers={"Retry-After": "1"}),
        generators_ok(),
    )
    retries = []
    client, sleeps = fake_client(script, on_retry=retries.append)
    assert [g.id for g in client.generators()] == ["relief"]
    assert sleeps == [3.0, 1.0]
    assert [(r.attempt, r.status, r.retry_after) for r in retries] == [(1, 429, "3"), (2, 503, "1")]


def test_the_last_429_is_raised_after_max_attempts():
    script = Script(
        *[
            httpx.Response(429, json={"code": "RATE_LIMIT_EXCEEDED"}, headers={"Retry-After": "2"})
            for _ in range(3)
        ]
    )
    client, sleeps = fake_client(script, max_attempts=3)
    with pytest.raises(RateLimited) as caught:
        client.generators()
    assert caught.value.retry_after == 2 and len(script.requests) == 3 and sleeps == [2.0, 2.0]


def test_a_retry_after_beyond_the_cap_is_not_waited_for():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    client, sleeps = fake_client(script, retry=RetryPolicy(max_retry_after=60))
    with pytest.raises(RateLimited):
        client.generators()
    assert sleeps == [] and len(script.requests) == 1


def test_creates_carry_one_idempotency_key_across_retries(tmp_path):
    photo = tmp_path / "chair.jpg"
    photo.write_bytes(b"\xff\xd8 not really a jpeg")
    batch = {"id": "b1", "status": "queued", "jobs": []}
    script = Script(
        httpx.ReadError("connection reset"),
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(201, json=batch, headers={"Idempotent-Replayed": "true"}),
    )
    client, _ = fake_client(script)
    created = client.create_batch([photo], generator="relief", params={"face_limit": 600})
    assert created.id == "b1" and created.replayed
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(keys) == 1 and len(next(iter(keys))) == 36
    for request in script.requests:  # the whole body is sent again on each attempt
        body = request.read()
        assert b"not really a jpeg" in body and b'{"face_limit": 600}' in body


def test_a_lost_connection_is_not_retried_for_a_post_without_a_key():
    script = Script(httpx.ReadError("connection reset"))
    client, _ = fake_client(script)
    with pytest.raises(TransportError):
        client.cancel_job("j1")
    assert len(script.requests) == 1


def test_a_refused_connection_is_retried_then_reported():
    script = Script(*[httpx.ConnectError("refused") for _ in range(2)])
    client, sleeps = fake_client(script, max_attempts=2)
    with pytest.raises(TransportError, match="refused"):
        client.generators()
    assert len(script.requests) == 2 and len(sleeps) == 1


def test_the_api_key_goes_only_to_the_server(tmp_path):
    from image2model_client import Artifact

    content = b"glTF model bytes"
    import hashlib

    artifact = Artifact(
        id="a1",
        kind="model",
        filename="chair.glb",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        url="https://cdn.example/chair.glb",
    )
    script = Script(httpx.Response(200, content=content))
    client, _ = fake_client(script)
    path = client.download_artifact(artifact, tmp_path)
    assert path.read_bytes() == content
    assert "authorization" not in script.requests[0].headers


def test_the_cli_parses_params_as_json_when_they_are():
    from image2model_client.cli import _parse_param

    assert _parse_param("face_limit=5000") == ("face_limit", 5000)
    assert _parse_param("invert=true") == ("invert", True)
    assert _parse_param("background=none") == ("background", "none")
    assert _parse_param("note=a=b") == ("note", "a=b")
    assert json.dumps(_parse_param("depth=0.2")[1]) == "0.2"
