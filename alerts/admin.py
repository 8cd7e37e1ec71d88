from django.contrib import admin

from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from audit.admin import AuditedAdminMixin


@admin.register(Budget)
class BudgetAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["workspace", "scope", "provider", "account", "amount"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "workspace", "kind", "message", "acknowledged_at"]
    list_filter = ["kind"]


@admin.register(NotificationChannel)
class NotificationChannelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    # The target is left off the list: a webhook URL often embeds a token.
    list_display = ["workspace", "kind", "target_display", "format", "is_active"]
    list_filter = ["kind", "is_active"]
    exclude = ["target"]


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "alert", "channel", "status", "attempts", "error"]
    list_filter = ["status"]
