from __future__ import annotations

import factory

from accounts.tests.factories import UserFactory
from providers.models import Provider, ProviderAccount


def provider(slug: str) -> Provider:
    """The seeded catalogue row (the data migration creates all six)."""
    return Provider.objects.get(slug=slug)


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderAccount
        skip_postgeneration_save = True

    workspace = factory.LazyFunction(lambda: UserFactory().personal_workspace)
    provider = factory.LazyFunction(lambda: provider("openai"))
    name = factory.Sequence(lambda n: f"Account {n}")

    @factory.post_generation
    def keys(obj, create, extracted, **kwargs):
        # AccountFactory(keys={"api_key": "sk-…"}) stores it encrypted, as the service does.
        for field, value in (extracted or {}).items():
            obj.set_secret(field, value)
        if create:
            obj.save()
