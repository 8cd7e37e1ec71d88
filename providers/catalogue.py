"""The provider catalogue: one Provider row per registered adapter, from the adapter's facts.

Each adapter module declares its catalogue facts (``catalogue_name``, ``description``,
``base_url_setting``, whether it has an official API); `catalogue_sync()` writes them, so a new
provider needs no data migration. It runs after every `migrate` (providers/apps.py), so an
existing database gets a newly registered provider, or a changed fact, on its next upgrade;
the seeding migration and the test setup call it too.
"""

from __future__ import annotations


def catalogue_rows() -> list[dict]:
    """One dict of Provider fields per registered provider, in registry order."""
    from providers.registry import ADAPTERS, get_adapter_class

    rows = []
    for slug in ADAPTERS:
        adapter = get_adapter_class(slug)
        rows.append(
            {
                "slug": slug,
                "name": adapter.catalogue_name or adapter.label,
                "has_official_api": adapter.supports_sync,
                "supports_per_request": True,
                "supports_manual": True,
                "base_url_setting": adapter.base_url_setting,
                "description": adapter.description,
            }
        )
    return rows


def catalogue_sync(provider_model=None) -> None:
    """Create or update the catalogue rows (takes the historical model in migrations)."""
    if provider_model is None:
        from providers.models import Provider as provider_model
    # A historical model (a migration, or migrate run to an older target) may lack newer fields.
    fields = {field.name for field in provider_model._meta.get_fields()}
    for row in catalogue_rows():
        slug = row.pop("slug")
        defaults = {name: value for name, value in row.items() if name in fields}
        provider_model.objects.update_or_create(slug=slug, defaults=defaults)
