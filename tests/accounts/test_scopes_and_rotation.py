from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.accounts import key_cache
from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create, api_key_rotate
from tests.conftest import sample

pytestmark = pytest.mark.django_db

STATUS = "/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status"


def client_for(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_a_read_only_key_cannot_upload(alice, broker):
    _, secret = api_key_create(owner=alice, name="dashboard", scopes=["read"])
    response = client_for(secret).post("/api/v1/upload/", {"files": [sample("chelsea.png")]})
    assert response.status_code == 403
    assert response.json()["message"] == "API key lacks the 'generate' scope"
    assert client_for(secret).get(STATUS).status_code == 404  # reading is allowed


def test_a_generate_only_key_cannot_read(alice, broker):
    _, secret = api_key_create(owner=alice, name="uploader", scopes=["generate"])
    assert client_for(secret).get(STATUS).json()["message"] == "API key lacks the 'read' scope"
    response = client_for(secret).post("/api/v1/upload/", {"files": [sample("chelsea.png")]})
    assert response.status_code == 200


def test_a_rotated_key_works_until_its_grace_ends_then_stops(alice):
    old, old_secret = api_key_create(owner=alice, name="ci")
    new, new_secret = api_key_rotate(api_key=old, grace=timedelta(hours=1))
    assert new.rotated_from == old and new.scopes == old.scopes
    assert client_for(old_secret).get(STATUS).status_code == 404  # still valid in the grace
    assert client_for(new_secret).get(STATUS).status_code == 404
    ApiKey.objects.filter(pk=old.pk).update(revoked_at=timezone.now() - timedelta(seconds=1))
    key_cache.forget_all()  # the grace ended by the clock in the database, not by a change
    response = client_for(old_secret).get(STATUS)
    assert response.status_code == 403 and response.json()["message"] == "API key has been revoked"
    assert client_for(new_secret).get(STATUS).status_code == 404


def test_rotate_and_revoke_commands(alice):
    key, secret = api_key_create(owner=alice, name="laptop")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "rotate_api_key", "--prefix", key.prefix, "--grace-hours", "0", stdout=out, stderr=err
    )
    new_secret = out.getvalue().strip()
    assert new_secret.startswith("i2m_") and new_secret != secret
    assert client_for(secret).get(STATUS).status_code == 403  # no grace: the old key stopped
    assert client_for(new_secret).get(STATUS).status_code == 404
    new_prefix = new_secret.split("_")[1]
    out = io.StringIO()
    call_command("revoke_api_key", "--prefix", new_prefix, stdout=out)
    assert f"Revoked {new_prefix}" in out.getvalue()
    assert client_for(new_secret).get(STATUS).json()["message"] == "API key has been revoked"
    with pytest.raises(CommandError, match="No API key with prefix"):
        call_command("revoke_api_key", "--prefix", "nope")


def test_revoking_during_a_grace_stops_the_key_at_once(alice):
    old, secret = api_key_create(owner=alice, name="ci")
    api_key_rotate(api_key=old, grace=timedelta(days=1))
    call_command("revoke_api_key", "--prefix", old.prefix, stdout=io.StringIO())
    assert client_for(secret).get(STATUS).status_code == 403


def test_the_database_holds_no_secret(alice):
    _, secret = api_key_create(owner=alice, name="x")
    row = ApiKey.objects.values().get()
    assert secret.split("_", 2)[2] not in " ".join(str(v) for v in row.values())
    assert len(row["secret_hash"]) == 64
