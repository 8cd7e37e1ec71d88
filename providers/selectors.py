"""Reads for providers and accounts. Every query from a request is scoped to its workspace."""

from __future__ import annotations

from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Workspace
from costtracker.db import fetch_prepared
from providers.models import IngestKey, Provider, ProviderAccount, hash_ingest_key


def provider_list() -> QuerySet[Provider]:
    return Provider.objects.all()


def _spoken_list(names: list[str]) -> str:
    """["A", "B", "C"] -> "A, B and C" (for sentences naming providers)."""
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def provider_names() -> dict[str, str]:
    """The catalogue's provider names for sentences: all, with official figures, per request."""
    rows = list(Provider.objects.order_by("name").values_list("name", "has_official_api"))
    return {
        "all": _spoken_list([name for name, _ in rows]),
        "official": _spoken_list([name for name, official in rows if official]),
        "per_request": _spoken_list([name for name, official in rows if not official]),
    }


def account_list(*, workspace: Workspace) -> QuerySet[ProviderAccount]:
    return ProviderAccount.objects.filter(workspace=workspace).select_related("provider")


def account_get_for_workspace(*, workspace: Workspace, pk) -> ProviderAccount:
    """404 for anyone else's account: never reveal that the id exists."""
    return get_object_or_404(account_list(workspace=workspace), pk=pk)


_KEY_MODELS = (IngestKey, ProviderAccount, Provider)


@cache
def _key_lookup_plan(alias: str) -> tuple[str, tuple]:
    """The lookup's SQL and, per model, its columns' converters (built once per database)."""
    conn = connections[alias]
    select = ", ".join(
        f"{table}.{conn.ops.quote_name(f.column)}"
        for table, model in zip("kap", _KEY_MODELS, strict=True)
        for f in model._meta.concrete_fields
    )
    sql = (
        f"SELECT {select} FROM {IngestKey._meta.db_table} k "
        f"JOIN {ProviderAccount._meta.db_table} a ON a.id = k.account_id "
        f"JOIN {Provider._meta.db_table} p ON p.id = a.provider_id "
        "WHERE k.digest = %s AND k.revoked_at IS NULL AND a.is_active = %s"
    )
    plans = []
    for model in _KEY_MODELS:
        fields = model._meta.concrete_fields
        converters = []
        for field in fields:
            col = field.get_col(model._meta.db_table)
            converters.append((col, conn.ops.get_db_converters(col) + col.get_db_converters(conn)))
        plans.append((model, [f.attname for f in fields], converters))
    return sql, tuple(plans)


def ingest_key_lookup(*, raw: str) -> IngestKey | None:
    """The active ingest key matching a plaintext key, with its account and provider, or None.

    On every ingested batch and proxied call, so one hand-written query whose SQL and column
    converters are built once (compiling the ORM query cost ~1 ms of CPU, more than the
    database took to answer it) and which PostgreSQL plans once per connection.
    """
    if not raw.startswith(IngestKey.PREFIX):
        return None
    conn = connections[DEFAULT_DB_ALIAS]
    sql, plans = _key_lookup_plan(conn.alias)
    rows = fetch_prepared(sql, [hash_ingest_key(raw), True], retry_safe=True)
    if not rows:
        return None
    row = rows[0]
    instances, start = [], 0
    for model, attnames, converters in plans:
        values = []
        for (col, funcs), value in zip(converters, row[start : start + len(attnames)], strict=True):
            for func in funcs:
                value = func(value, col, conn)
            values.append(value)
        instances.append(model.from_db(conn.alias, attnames, values))
        start += len(attnames)
    key, account, provider = instances
    account.provider = provider
    key.account = account
    return key
