from __future__ import annotations

import uuid
from decimal import Decimal

import factory

from accounts.tests.factories import UserFactory
from alerts.models import Alert, Budget, NotificationChannel


class BudgetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Budget

    workspace = factory.LazyFunction(lambda: UserFactory().personal_workspace)
    scope = Budget.Scope.OVERALL
    amount = Decimal("100.00")
    thresholds = factory.LazyFunction(lambda: [80, 100])
    forecast_alert = False


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    workspace = factory.LazyFunction(lambda: UserFactory().personal_workspace)
    kind = Alert.Kind.THRESHOLD
    dedupe_key = factory.LazyFunction(lambda: f"test:{uuid.uuid4()}")
    message = "All spend: $85.00 spent this month, 85.0% of the $100.00 budget (alert at 80%)."
    threshold = 80
    data = factory.LazyFunction(lambda: {"spent": "85", "amount": "100.00"})


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationChannel

    workspace = factory.LazyFunction(lambda: UserFactory().personal_workspace)
    kind = NotificationChannel.Kind.EMAIL
    target = factory.LazyAttribute(lambda o: o.workspace.personal_for.email)
