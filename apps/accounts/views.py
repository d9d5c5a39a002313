"""The signed-in user's own API keys: create (secret shown once), list, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services


class KeyForm(forms.Form):
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
        _, secret = services.api_key_create(
            owner=request.user, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
        form = KeyForm()
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
