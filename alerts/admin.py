from django.contrib import admin

from alerts.models import Alert, Budget


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["owner", "scope", "provider", "account", "amount"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "owner", "kind", "message", "acknowledged_at"]
    list_filter = ["kind"]
