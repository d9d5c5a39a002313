from __future__ import annotations

import socket

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_plain_health_matches_the_old_service():
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "image2model-backend"}


def test_v1_health_has_identity_version_and_timestamp():
    body = Client().get("/api/v1/health/").json()
    assert body["status"] == "healthy"
    assert body["service"] == "image2model-backend"
    assert body["version"] == "1.0.0"
    assert "T" in body["timestamp"]


def test_liveness_checks_nothing_else():
    body = Client().get("/api/v1/health/liveness").json()
    assert body["status"] == "alive" and body["timestamp"]


def test_readiness_is_ready_with_real_postgres_and_redis():
    response = Client().get("/api/v1/health/readiness")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert {c["name"]: c["status"] for c in body["components"]} == {
        "database": "healthy",
        "cache": "healthy",
        "broker": "healthy",
    }


@pytest.mark.timeout(15)
def test_readiness_answers_503_when_redis_is_down(settings):
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    settings.CACHE_REDIS_URL = dead
    settings.BROKER_REDIS_URL = dead
    response = Client().get("/api/v1/health/readiness")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    statuses = {c["name"]: c["status"] for c in body["components"]}
    assert statuses == {"database": "healthy", "cache": "unhealthy", "broker": "unhealthy"}


def test_detailed_reports_every_component_with_timings():
    response = Client().get("/api/v1/health/detailed")
    body = response.json()
    components = body["components"]
    assert set(components) == {"database", "redis", "workers", "disk_space", "generators"}
    for component in components.values():
        assert component["status"] in {"healthy", "degraded", "unhealthy"}
        assert isinstance(component["response_time_ms"], float)
    assert components["database"]["status"] == "healthy"
    assert components["redis"]["status"] == "healthy"
    assert "relief" in components["generators"]["available"]
    # No worker runs in this test: generation cannot happen, the service is degraded.
    assert components["workers"] == {**components["workers"], "status": "degraded", "alive": 0}
    assert body["status"] == "degraded"
    assert response.status_code == 200


@pytest.mark.timeout(15)
def test_detailed_answers_503_quickly_when_redis_is_down(settings):
    settings.CACHE_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = Client().get("/api/v1/health/detailed")
    assert response.status_code == 503
    assert response.json()["components"]["redis"]["status"] == "unhealthy"
    assert response.json()["status"] == "unhealthy"


@pytest.mark.django_db(transaction=True)
def test_detailed_counts_a_worker_that_beats(broker, worker):
    import time

    for _ in range(50):
        components = Client().get("/api/v1/health/detailed").json()["components"]
        if components["workers"]["alive"]:
            break
        time.sleep(0.1)
    assert components["workers"]["status"] == "healthy"
    assert components["workers"]["alive"] >= 1


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/health/metrics"])
def test_metrics_are_prometheus_text(path):
    Client().get("/health")
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"django_http_requests_total_by_view_transport_method_total" in response.content
