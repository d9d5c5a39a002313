"""Each API version, fuzzed by schemathesis from its own OpenAPI document against a live server.

One daphne process in services mode (the test database, the test Redis) serves both versions.
`st run` (schemathesis' CLI, in its own process) calls every operation of the served document
with generated requests, valid and invalid: the coverage phase (boundary and wrong-type values,
missing fields, malformed bodies), the fuzzing phase, and the stateful phase (chains such as
create, then cancel, then delete, along the links schemathesis infers from the schemas). The
requests carry an API key with every scope. No answer may be a 5xx, and every answer must match
the document (v2: its status codes and content types too). Every other request swaps the
generated ids for real ones (schemathesis_hooks.py), so success answers are checked as well as
404s. The CLI rather than schemathesis' pytest plugin: its fixture-based loader needs a pytest
node attribute that pytest 9.2 no longer has, and one run per version needs the data set up once.

Nothing is excluded. The live streams (SSE) are not in either document (v1's are plain Django
views); should they appear, a stream opened with a real id ends within seconds here
(STREAM_DEFAULT_TIMEOUT_SECONDS=2), so they cannot hang the run.

The budget is small for CI: ``SCHEMATHESIS_MAX_EXAMPLES`` (default 5) examples per operation in
the fuzzing phase, from the fixed seed ``SCHEMATHESIS_SEED``, one worker, no shrinking and no
example database, so a run is repeatable. A deeper run, for example::

    SCHEMATHESIS_MAX_EXAMPLES=100 make test PYTEST_ARGS=tests/contract/test_schemathesis.py

Apart from the fuzzing, operation by operation: every operation that needs a key refuses none
and an unknown one (v1: 403 in the v1 envelope, the old service's answer; v2: 401 problem
details) and a key without its scope (403), answers 404 for random ids, and 404 for another
user's objects.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import dramatiq
import httpx
import pytest
from django.test import Client

from apps.accounts.auth import SCOPES
from apps.accounts.services import api_key_create
from image2model import api
from tests.conftest import sample, wait_for_jobs
from tests.contract.schemathesis_hooks import real_values
from tests.servers import BIN, ROOT, Server, process_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261125"))
REQUEST_TIMEOUT = 30


# --- the server and the data it serves ------------------------------------------------------------


@pytest.fixture(scope="module")
def server_media(tmp_path_factory):
    return tmp_path_factory.mktemp("contract-media")


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, server_media, tmp_path_factory):
    log = tmp_path_factory.mktemp("contract-logs") / "server.log"
    with django_db_blocker.unblock():
        database_url = process_database_url()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_ENV": "test",
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(server_media),
            "FAL_KEY": "",  # the offline generator only: nothing leaves the machine
            # Fuzzing sends far more requests than a client: the limits stay on (their code
            # runs) but out of reach, so every request reaches its endpoint.
            "RATE_LIMIT_UPLOADS": "1000000/m",
            "RATE_LIMIT_READS": "1000000/m",
            "RATE_LIMIT_ANONYMOUS": "1000000/m",
            # A live stream opened with a real id ends by itself within seconds.
            "STREAM_DEFAULT_TIMEOUT_SECONDS": "2",
            "STREAM_POLL_SECONDS": "0.5",
            "SSE_HEARTBEAT_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    started = Server(env, log)
    started.log_path = log
    yield started
    started.stop()
    dramatiq.get_broker().flush_all()  # the jobs the fuzzed uploads queued


@pytest.fixture
def media_root(settings, server_media):
    settings.MEDIA_ROOT = server_media  # the server and this process share the stored files
    return server_media


@pytest.fixture
def api_key(django_user_model) -> str:
    owner = django_user_model.objects.create_user(username="contract", password="contract-pw-1")
    return api_key_create(owner=owner, name="contract", scopes=list(SCOPES))[1]


@pytest.fixture
def auth_headers(api_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def known(api_key, broker, media_root) -> dict[str, str]:
    """Real objects of the key's owner: a finished batch (a job, its model and preview) and a
    batch whose job stays queued (no worker runs during the fuzzing)."""
    from apps.jobs import actors  # noqa: F401  registers the actors on the broker

    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        response = client.post("/api/v1/upload/", {"files": [sample("chelsea.png")]})
        assert response.status_code == 200, response.content
        finished = response.json()
        wait_for_jobs(broker, worker)
    finally:
        worker.stop()
    listing = client.get(f"/api/v1/download/{finished['batch_id']}/all").json()
    assert listing["total_files"] == 1, listing
    response = client.post("/api/v1/upload/", {"files": [sample("coffee.png")]})
    assert response.status_code == 200, response.content
    queued = response.json()
    return {
        "finished_batch": finished["batch_id"],
        "finished_job": finished["uploaded_files"][0]["task_id"],
        "finished_file": finished["uploaded_files"][0]["file_id"],
        "model_filename": listing["files"][0]["filename"],
        "direct_token": listing["download_urls"][0].rsplit("/", 1)[1],
        "queued_batch": queued["batch_id"],
        "queued_job": queued["uploaded_files"][0]["task_id"],
        "queued_file": queued["uploaded_files"][0]["file_id"],
    }


# --- fuzzing --------------------------------------------------------------------------------------

PHASES = "examples,coverage,fuzzing,stateful"
CHECKS = {
    # v1 documents only its success answers (the old service's document had no more), so an
    # undocumented 4xx is no failure there, and most v1 bodies are plain dicts without a schema.
    "v1": [
        "not_a_server_error",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    ],
    # v2 documents its errors: every status and content type it answers must be documented.
    "v2": [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "use_after_free",
        "ensure_resource_availability",
    ],
}


def run_schemathesis(version: str, server, api_key: str, known: dict, workdir) -> str:
    """`st run` on the version's served document; returns its report, fails on any failure."""
    command = [
        str(BIN / "st"),
        "run",
        f"{server.url}/api/{version}/openapi.json",
        "--url",
        server.url,
        "--header",
        f"Authorization: Bearer {api_key}",
        "--checks",
        ",".join(CHECKS[version]),
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--no-shrink",
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",  # the real key goes in every request instead
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--suppress-health-check",
        "all",
        # One worker: repeatable, and several threads trip a CPython 3.11 ast bug (in
        # hypothesis' lambda descriptions) that schemathesis reports as a runtime error.
        "--workers",
        "1",
        "--no-color",
    ]
    env = dict(os.environ)
    env.update(
        {
            "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
            "CONTRACT_KNOWN": json.dumps(known),
            "CONTRACT_VERSION": version,
            "PYTHONPATH": str(ROOT),
        }
    )
    result = subprocess.run(
        command,
        cwd=workdir,  # schemathesis looks for a schemathesis.toml from here up: there is none
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(
            f"schemathesis found problems in {version}:\n{report}\n"
            f"--- the server's errors ---\n{server_errors(server.log_path, f'/api/{version}/')}"
        )
    return report


def server_errors(log_path, prefix: str, limit: int = 5) -> str:
    """The last unhandled errors the server logged under ``prefix``, with each trace's end."""
    errors = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"exc_info"' not in line or prefix not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        trace = record["exc_info"].strip().splitlines()
        errors.append(f"{record.get('message')} (request {record.get('request_id')}): {trace[-1]}")
    return "\n".join(errors[-limit:]) or "(none logged)"


def has_api(version: str) -> bool:
    return getattr(api, f"api_{version}", None) is not None


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fuzzed(version, server, api_key, known, tmp_path):
    if not has_api(version):
        pytest.skip(f"image2model.api has no api_{version} yet")
    run_schemathesis(version, server, api_key, known, tmp_path)


# --- authentication and ownership, operation by operation -----------------------------------------

NOT_ID_PARAMETERS = ("filename", "token")


# The live streams are ASGI consumers outside the OpenAPI documents, with the same rules.
STREAMS = {
    "v1": ["/api/v1/status/tasks/{task_id}/stream", "/api/v1/status/jobs/{job_id}/stream"],
    "v2": ["/api/v2/batches/{batch_id}/events", "/api/v2/jobs/{job_id}/events"],
}


def secured_operations(version: str) -> list[tuple[str, str, dict]]:
    """(method, path, operation) of every operation of the document that needs a key, and of
    the version's live streams."""
    if not has_api(version):
        return []
    document = getattr(api, f"api_{version}").get_openapi_schema()
    operations = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and operation.get("security")
    ]
    for path in STREAMS[version]:
        names = re.findall(r"\{([^}]+)\}", path)
        operations.append(("GET", path, {"parameters": [{"in": "path", "name": n} for n in names]}))
    return operations


def scope_of(method: str) -> str:
    """The scope an operation needs (docs/api.md, Scopes; docs/api-v2.md, Endpoints)."""
    return "read" if method == "GET" else "generate"


def fill(server, version: str, path: str, known: dict[str, str] | None) -> str:
    """The path with random UUIDs (``known`` None) or real values in its parameters."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if known is not None:
            return real_values(version, path, name, known)[0]
        return {"filename": "model.glb", "token": "not-a-token"}.get(name, str(uuid.uuid4()))

    return server.url + re.sub(r"\{([^}]+)\}", value, path)


def assert_v1_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] is True and body["status_code"] == status, body
    assert body["error_code"] == f"HTTP_{status}", body
    assert set(body) == {"error", "error_code", "message", "status_code", "details"}, body
    if message is not None:
        assert body["message"] == message, body


def assert_v2_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(body), body


def refused(version: str, response: httpx.Response, message: str) -> None:
    """No key, or a key that is not one: v1 keeps the old service's 403 with the reason
    (docs/api.md, Authentication); v2 answers 401 (docs/api-v2.md)."""
    if version == "v1":
        assert_v1_error(response, 403, message)
    else:
        assert_v2_problem(response, 401, "UNAUTHORIZED")


def forbidden(version: str, response: httpx.Response, scope: str) -> None:
    if version == "v1":
        assert_v1_error(response, 403, f"API key lacks the '{scope}' scope")
    else:
        assert_v2_problem(response, 403, "FORBIDDEN")


def not_found(version: str, response: httpx.Response) -> None:
    if version == "v1":
        assert_v1_error(response, 404)
    else:
        assert_v2_problem(response, 404, "NOT_FOUND")


@pytest.fixture
def other_keys(django_user_model, api_key) -> dict[str, str]:
    """Keys of the same owner with one scope each, and a key of another user."""
    owner = django_user_model.objects.get(username="contract")
    stranger = django_user_model.objects.create_user(username="stranger", password="stranger-pw-1")
    return {
        "read": api_key_create(owner=owner, name="read only", scopes=["read"])[1],
        "generate": api_key_create(owner=owner, name="generate only", scopes=["generate"])[1],
        "stranger": api_key_create(owner=stranger, name="stranger", scopes=list(SCOPES))[1],
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_secured_operation_checks_the_key_its_scope_and_the_owner(
    version, server, auth_headers, other_keys, known, subtests
):
    operations = secured_operations(version)
    if not operations:
        pytest.skip(f"image2model.api has no api_{version} yet")

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for method, path, operation in operations:
            random_ids = fill(server, version, path, None)
            scope = scope_of(method)
            other_scope = "generate" if scope == "read" else "read"
            with subtests.test(msg=f"{method} {path} without a key"):
                refused(version, client.request(method, random_ids), "Not authenticated")
            with subtests.test(msg=f"{method} {path} with an unknown key"):
                unknown = bearer("i2m_abcdefgh_" + "x" * 43)
                refused(
                    version, client.request(method, random_ids, headers=unknown), "Invalid API key"
                )
            with subtests.test(msg=f"{method} {path} with a key without the '{scope}' scope"):
                response = client.request(
                    method, random_ids, headers=bearer(other_keys[other_scope])
                )
                forbidden(version, response, scope)
            in_path = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            if not set(in_path) - set(NOT_ID_PARAMETERS):
                continue  # no id to be wrong about (lists, uploads)
            with subtests.test(msg=f"{method} {path} with a random id"):
                not_found(version, client.request(method, random_ids, headers=auth_headers))
            with subtests.test(msg=f"{method} {path} on another user's objects"):
                theirs = fill(server, version, path, known)
                response = client.request(method, theirs, headers=bearer(other_keys["stranger"]))
                not_found(version, response)
