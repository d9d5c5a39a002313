from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse

from apps.accounts import services
from apps.accounts.models import ApiKey
from apps.core.admin_actions import confirmed_action


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        initial=["generate", "read"],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ("owner", "name", "scopes", "rate_limit_per_minute", "expires_at")


def _secrets_page(request, modeladmin, created: list[tuple[ApiKey, str]], title: str):
    return TemplateResponse(
        request,
        "admin/accounts/apikey/secrets.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "created": created,
            "opts": ApiKey._meta,
        },
    )


@confirmed_action(
    "Revoke selected keys", question="Revoke these keys now? They stop at once.", danger=True
)
def revoke_keys(modeladmin, request, queryset):
    keys = list(queryset)
    for api_key in keys:
        services.api_key_revoke(api_key=api_key)
    return f"Revoked {len(keys)} key(s)."


@confirmed_action(
    "Rotate selected keys",
    question="Issue a successor for each key? The old keys keep working for 24 hours.",
)
def rotate_keys(modeladmin, request, queryset):
    created = []
    for api_key in queryset:
        try:
            created.append(services.api_key_rotate(api_key=api_key, grace=timedelta(hours=24)))
        except ValueError:  # revoked, or rotated already (its successor is the one to rotate)
            continue
    return _secrets_page(request, modeladmin, created, "New keys (shown once)")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "owner",
        "scopes",
        "rate_limit_per_minute",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("revoked_at", "expires_at", "created_at")
    search_fields = ("name", "prefix", "owner__username")
    date_hierarchy = "created_at"
    readonly_fields = ("prefix", "last_used_at", "rotated_from", "created_at", "revoked_at")
    exclude = ("secret_hash",)
    actions = [rotate_keys, revoke_keys]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return ("owner", *self.readonly_fields) if obj else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("owner", "name", "scopes", "rate_limit_per_minute", "expires_at")
        return super().get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        api_key, secret = services.api_key_create(
            owner=data["owner"],
            name=data["name"],
            scopes=data["scopes"],
            expires_at=data["expires_at"],
            rate_limit_per_minute=data["rate_limit_per_minute"],
            enforce_limit=False,  # staff decide
        )
        form.instance = obj = api_key
        request._new_api_key = (api_key, secret)

    def response_add(self, request, obj, post_url_continue=None):
        created = getattr(request, "_new_api_key", None)
        if created is None:
            return super().response_add(request, obj, post_url_continue)
        return _secrets_page(request, self, [created], "New key (shown once)")
