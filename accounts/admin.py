from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin

from accounts import services
from accounts.models import ApiToken, Invite, Membership, User, Workspace


@admin.register(User)
class CostTrackerUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (("Preferences", {"fields": ("time_zone",)}),)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # The digest is a hash, but there is still no reason to show it.
    list_display = ["hint", "user", "created_at", "expires_at", "last_used_at"]
    fields = ["user", "hint", "created_at", "expires_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    """Name and time zone are edited here, through the service (validated, logged). Members,
    roles and invites are managed in the app, whose rules (an owner always, a link shown once)
    the admin would bypass; a workspace is made there too, with its owner."""

    list_display = ["name", "time_zone", "personal_for", "created_at"]
    list_filter = [("personal_for", admin.EmptyFieldListFilter), "time_zone"]
    search_fields = ["name", "personal_for__username"]
    fields = ["name", "time_zone", "personal_for", "created_at"]
    readonly_fields = ["personal_for", "created_at"]
    inlines = [MembershipInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_personal)

    def get_actions(self, request):
        # Bulk deletion would reach personal workspaces; delete one at a time instead.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        stored = Workspace.objects.get(pk=obj.pk)
        services.workspace_update(workspace=stored, name=obj.name, time_zone=obj.time_zone)

    def get_deleted_objects(self, objs, request):
        # What a workspace owns goes with it (the service deletes it), including what the
        # admin never deletes one by one (members, invites): deleting the workspace is the
        # permission that counts.
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request, obj):
        services.workspace_delete(workspace=obj)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Read-only: roles change and members leave in the app, where a workspace keeps an
    owner."""

    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__username", "workspace__name"]
    fields = ["user", "workspace", "role", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Read-only, and never the digest: an invite is made in the app (its link is shown once,
    there) and may be revoked here."""

    list_display = ["token_hint", "workspace", "role", "email", "state", "created_at", "expires_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["email", "workspace__name"]
    fields = [
        "workspace",
        "role",
        "email",
        "token_hint",
        "created_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="Token starts with")
    def token_hint(self, obj: Invite) -> str:
        return f"{obj.hint}…"

    @admin.action(description="Revoke the selected invites", permissions=["revoke"])
    def revoke(self, request, queryset):
        for invite in queryset:
            services.invite_revoke(invite=invite)
        messages.success(request, f"Revoked {queryset.count()} invite(s); used ones stay used.")

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_invite")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
