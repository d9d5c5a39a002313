"""The service as it runs in production: DEBUG off, strict CORS, HTTPS, shared rate limits.

Real daphne processes with production settings, against the test database and Redis.
"""

from __future__ import annotations

import os

import httpx
import pytest

from apps.accounts.services import api_key_create
from tests.conftest import DATA
from tests.servers import Server, manage, process_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ORIGIN = "https://app.example.com"


def production_env(tmp_path, database_name: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_ENV": "production",
            "DEBUG": "false",
            "SECRET_KEY": "production-test-" + "s3cr3t-" * 8,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": process_database_url(database_name),
            "MEDIA_ROOT": str(tmp_path / "media"),
            "STATIC_ROOT": str(tmp_path / "static"),
            "CORS_ALLOWED_ORIGINS": ORIGIN,
            "TRUST_X_FORWARDED_PROTO": "true",
            "RATE_LIMIT_UPLOADS": "3/h",  # an hour's window: the uploads never straddle two
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("LOG_LEVEL", None)
    return env


def collectstatic(env):
    result = manage("collectstatic", "--noinput", env=env)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def prod(django_db_setup, django_db_blocker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prod")
    with django_db_blocker.unblock():
        env = production_env(tmp)
    collectstatic(env)
    servers = [Server(env, tmp / "a.log"), Server(env, tmp / "b.log")]
    yield servers, env, tmp
    for server in servers:
        server.stop()


HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy says


def test_check_deploy_passes(prod):
    _, env, _ = prod
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_plain_http_is_redirected_to_https(prod):
    server = prod[0][0]
    response = httpx.get(f"{server.url}/api/v1/models/available")
    assert response.status_code == 301
    assert (
        response.headers["location"] == f"https://127.0.0.1:{server.port}/api/v1/models/available"
    )
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes stay on plain HTTP


def test_https_responses_carry_the_security_headers(prod):
    server = prod[0][0]
    response = httpx.get(f"{server.url}/", headers=HTTPS)
    assert response.status_code == 200
    headers = response.headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-request-id"]
    login = httpx.get(f"{server.url}/accounts/login/", headers=HTTPS)
    cookie = login.headers["set-cookie"]
    assert "csrftoken" in cookie and "Secure" in cookie


def test_an_unknown_origin_gets_no_cors_grant(prod):
    server = prod[0][0]
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
        **HTTPS,
    }
    response = httpx.options(f"{server.url}/api/v1/upload/", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    allowed = httpx.options(f"{server.url}/api/v1/upload/", headers={**preflight, "Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"]


def test_the_upload_limit_holds_across_two_web_processes(prod, alice):
    (first, second), _, _ = prod
    _, key = api_key_create(owner=alice, name="ci")
    headers = {"Authorization": f"Bearer {key}", **HTTPS}
    photo = (DATA / "chelsea.png").read_bytes()

    def upload(server):
        return httpx.post(
            f"{server.url}/api/v1/upload/",
            headers=headers,
            timeout=30,
            files=[("files", ("chelsea.png", photo, "image/png"))],
        )

    results = [upload(first), upload(second), upload(first), upload(second)]
    assert [r.status_code for r in results] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in results] == ["2", "1", "0", "0"]
    limited = results[-1]
    assert limited.json()["message"] == "Rate limit exceeded"
    assert int(limited.headers["retry-after"]) >= 1


def test_a_server_error_shows_no_internals(django_db_setup, django_db_blocker, tmp_path):
    # A real fault: the database this server is pointed at does not exist.
    with django_db_blocker.unblock():
        env = production_env(tmp_path, database_name="image2model_missing_database")
    collectstatic(env)
    server = Server(env, tmp_path / "broken.log")
    try:
        api = httpx.get(
            f"{server.url}/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status",
            headers={"Authorization": "Bearer i2m_abc_def", **HTTPS},
        )
        # A session cookie makes the page read the (missing) session table.
        page = httpx.get(f"{server.url}/", headers={"Cookie": "sessionid=abc123def456", **HTTPS})
    finally:
        server.stop()
    assert api.status_code == 500
    body = api.json()
    assert body["error"] is True and body["error_code"] == "INTERNAL_SERVER_ERROR"
    assert body["details"]["request_id"] == api.headers["x-request-id"]
    assert page.status_code == 500 and api.headers["x-request-id"]
    for text in (api.text, page.text):
        for leak in (
            "Traceback",
            "psycopg",
            "image2model_missing_database",
            "/work",
            "SECRET",
            "settings",
            'File "',
        ):
            assert leak not in text
    assert "request id" in page.text


def test_debug_logging_is_off(prod):
    _, _, tmp = prod
    log = (tmp / "a.log").read_text()
    assert log  # the server did log (requests)
    assert " DEBUG " not in log
