"""Admin actions that ask for confirmation first (a page listing what they will touch)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse


def confirmed_action(
    description: str, *, question: str, danger: bool = False, permission: str = "change"
):
    """Wrap ``callback(modeladmin, request, queryset)`` so it runs only once confirmed.

    The callback returns a one-line summary (shown as a message) or a response of its own.

    The first POST shows a confirmation page listing the selected objects; the second (with
    ``confirm``) runs the callback and reports its one-line summary.
    """

    def decorate(callback: Callable) -> Callable:
        # Django offers an action only to users with this permission on the model.
        @admin.action(description=description, permissions=[permission])
        @wraps(callback)
        def action(modeladmin, request, queryset):
            if request.POST.get("confirm") == "yes":
                result = callback(modeladmin, request, queryset)
                if isinstance(result, HttpResponseBase):
                    return result  # a page of its own (e.g. new secrets, shown once)
                if result:
                    modeladmin.message_user(request, result, messages.SUCCESS)
                return None
            return TemplateResponse(
                request,
                "admin/confirm_action.html",
                {
                    **modeladmin.admin_site.each_context(request),
                    "title": description,
                    "question": question,
                    "danger": danger,
                    "objects": list(queryset[:200]),
                    "count": queryset.count(),
                    "action": request.POST.get("action"),
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "opts": modeladmin.model._meta,
                },
            )

        return action

    return decorate


class DeletesDependentsMixin:
    """For admins whose objects own rows that are read-only in their own admin.

    Django refuses to delete an object when its cascade reaches a model whose admin denies
    delete permission. Admins marked ``deleted_with_parent = True`` (an append-only event log,
    stored outputs) deny deleting their rows one by one, yet those rows must go with the object
    that owns them. Their refusal is dropped from the check; every other refusal stands (an
    unfinished job still blocks deleting its batch).
    """

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        dependents = {
            model_admin.model._meta.verbose_name
            for model_admin in self.admin_site._registry.values()
            if getattr(model_admin, "deleted_with_parent", False)
        }
        return deleted, counts, perms_needed - dependents, protected
