"""The signed-in user's own API keys: create (secret shown once), list, revoke."""

from __future__ import annotations

import secrets
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services


class KeyForm(forms.Form):
    # One token per rendered form: a reload that re-posts it creates nothing twice. (The page
    # answers the POST itself instead of redirecting, so the secret is never stored anywhere.)
    once = forms.CharField(widget=forms.HiddenInput)
    name = forms.CharField(max_length=100, label="Name", help_text="Where the key is used.")
    scopes = forms.MultipleChoiceField(
        choices=[("generate", "Generate (upload)"), ("read", "Read (status, downloads)")],
        initial=["generate", "read"],
        widget=forms.CheckboxSelectMultiple,
    )


@login_required
def keys_page(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        if cache.add(f"key-form:{request.user.pk}:{form.cleaned_data['once']}", 1, timeout=86400):
            try:
                _, secret = services.api_key_create(
                    owner=request.user,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                )
            except services.KeyLimitReached as refused:
                messages.error(request, refused.message)
        else:
            messages.info(request, "That key was already created; its secret was shown once.")
        form = KeyForm(initial={"once": secrets.token_urlsafe(16)})
    elif request.method != "POST":
        form = KeyForm(initial={"once": secrets.token_urlsafe(16)})
    keys = selectors.api_key_list_for_owner(owner=request.user)
    return render(request, "accounts/keys.html", {"form": form, "keys": keys, "secret": secret})


@login_required
@require_POST
def key_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    api_key = next(
        (k for k in selectors.api_key_list_for_owner(owner=request.user) if k.prefix == prefix),
        None,
    )
    if api_key is None:
        raise Http404("No such key")
    services.api_key_revoke(api_key=api_key)
    messages.info(request, f"Revoked the key {api_key.name} ({api_key.prefix}).")
    return redirect("accounts:keys")


def login_throttled(view):
    """Refuse sign-in attempts past the limits (429) before the password is even checked."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if services.login_attempt_limited(request):
            return login_refused(request)
        return view(request, *args, **kwargs)

    return wrapper


def login_refused(request: HttpRequest) -> HttpResponse:
    response = render(request, "registration/login_throttled.html", status=429)
    response["Retry-After"] = "60"
    return response


login = login_throttled(LoginView.as_view())
