from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

STATUS = "/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status"


def call(key: str):
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").get(STATUS)


def test_create_api_key_prints_a_working_secret_once_and_stores_only_its_hash(alice):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--user", "alice", "--name", "laptop", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    key = ApiKey.objects.get(name="laptop")
    assert secret.startswith(f"i2m_{key.prefix}_")
    assert secret not in str(list(ApiKey.objects.values_list()))
    assert call(secret).status_code == 404  # authenticated; the task simply is not there


def test_create_api_key_refuses_an_unknown_user_and_scope(alice):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_key", "--user", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="Unknown scope 'root'"):
        call_command("create_api_key", "--user", "alice", "--name", "x", "--scopes", "root")


def test_a_revoked_key_says_so(alice):
    key, secret = api_key_create(owner=alice, name="old")
    api_key_revoke(api_key=key)
    response = call(secret)
    assert response.status_code == 403
    assert response.json()["message"] == "API key has been revoked"


def test_an_expired_key_says_so(alice):
    _, secret = api_key_create(
        owner=alice, name="old", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert call(secret).json()["message"] == "API key has expired"


def test_last_used_is_written_at_most_once_a_minute(alice):
    key, secret = api_key_create(owner=alice, name="busy")
    call(secret)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    call(secret)
    assert first is not None and ApiKey.objects.get(pk=key.pk).last_used_at == first


def test_a_signed_in_user_can_use_the_api_with_the_session(alice):
    client = Client()
    client.force_login(alice)
    assert client.get(STATUS).status_code == 404
    assert Client().get(STATUS).json()["message"] == "Not authenticated"
