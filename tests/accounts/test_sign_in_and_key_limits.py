"""Sign-in throttling (pages and admin), the cap on a user's own keys, and one rotation per key."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.test import Client

from apps.accounts.models import ApiKey
from apps.accounts.services import KeyLimitReached, api_key_create, api_key_rotate

pytestmark = pytest.mark.django_db


def client_from_somewhere() -> Client:
    """A client with its own IP address, so counters of other tests never meet it."""
    return Client(REMOTE_ADDR=f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.7")


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_guessing_one_user_s_password_is_stopped(path, settings, django_user_model):
    # Per hour: a fixed window of a minute could end between the attempts (each hashes a
    # password), and the fourth would then count as the first of a new window.
    settings.RATE_LIMIT_LOGIN_USER = "3/h"
    settings.RATE_LIMIT_LOGIN_IP = "100/h"
    # A name of its own: the counters live in the shared cache for the rest of the hour.
    name = f"carol{random.randint(0, 10**9)}"
    django_user_model.objects.create_user(name, password="carol-password-1", is_staff=True)
    answers = [
        client_from_somewhere().post(path, {"username": name, "password": f"guess-{n}"})
        for n in range(4)
    ]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # the form again, with errors
    assert answers[3].status_code == 429 and answers[3]["Retry-After"] == "60"
    assert "Too many sign-in attempts" in answers[3].content.decode()
    # Even the right password is refused while the limit holds: the guesser learns nothing.
    right = client_from_somewhere().post(path, {"username": name, "password": "carol-password-1"})
    assert right.status_code == 429 and "_auth_user_id" not in right.client.session
    # Another user name is not affected.
    other = client_from_somewhere().post(path, {"username": f"{name}-other", "password": "x"})
    assert other.status_code == 200


def test_one_address_guessing_many_users_is_stopped(settings, alice):
    settings.RATE_LIMIT_LOGIN_USER = "100/h"
    settings.RATE_LIMIT_LOGIN_IP = "2/h"  # an hour's window: the attempts never straddle two
    client = client_from_somewhere()
    codes = [
        client.post("/accounts/login/", {"username": f"user{n}", "password": "x"}).status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]
    assert client.get("/accounts/login/").status_code == 200  # only attempts count


def test_signing_in_still_works_under_the_limits(alice):
    client = client_from_somewhere()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(alice.pk)


def test_a_user_holds_at_most_the_allowed_number_of_working_keys(settings, alice):
    settings.API_KEYS_PER_USER = 2
    first, _ = api_key_create(owner=alice, name="one")
    api_key_create(owner=alice, name="two")
    with pytest.raises(KeyLimitReached):
        api_key_create(owner=alice, name="three")
    assert ApiKey.objects.filter(owner=alice).count() == 2
    # The page says so and creates nothing.
    client = Client()
    client.force_login(alice)
    page = client.get("/account/keys/").content.decode()
    once = page.split('name="once" value="')[1].split('"')[0]
    refused = client.post(
        "/account/keys/", {"once": once, "name": "three", "scopes": ["read"]}
    ).content.decode()
    assert "the most allowed (2)" in refused
    assert "new-secret" not in refused
    assert ApiKey.objects.filter(owner=alice).count() == 2
    # Revoked keys do not count; operators and rotations are not limited.
    from apps.accounts.services import api_key_revoke

    api_key_revoke(api_key=first)
    api_key_create(owner=alice, name="three")
    api_key_create(owner=alice, name="operator's", enforce_limit=False)
    assert ApiKey.objects.filter(owner=alice).count() == 4


def test_a_key_in_its_grace_period_cannot_be_rotated_again(alice):
    key, _ = api_key_create(owner=alice, name="deploy")
    successor, _ = api_key_rotate(api_key=key, grace=timedelta(hours=24))
    key.refresh_from_db()
    ends = key.revoked_at
    with pytest.raises(ValueError, match="rotate its successor"):
        api_key_rotate(api_key=key, grace=timedelta(hours=24))
    key.refresh_from_db()
    assert key.revoked_at == ends  # its grace did not start again
    assert ApiKey.objects.filter(rotated_from=key).count() == 1
    api_key_rotate(api_key=successor, grace=timedelta(hours=24))  # the successor can be
