from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiToken, User


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
