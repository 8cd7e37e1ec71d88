"""Reads for providers and accounts. Every query from a request is scoped to its user."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from providers.models import IngestKey, Provider, ProviderAccount, hash_ingest_key


def provider_list() -> QuerySet[Provider]:
    return Provider.objects.all()


def account_list(*, user: User) -> QuerySet[ProviderAccount]:
    return ProviderAccount.objects.filter(owner=user).select_related("provider")


def account_get_for_user(*, user: User, pk) -> ProviderAccount:
    """404 for anyone else's account: never reveal that the id exists."""
    return get_object_or_404(account_list(user=user), pk=pk)


def ingest_key_lookup(*, raw: str) -> IngestKey | None:
    """The active ingest key matching a plaintext key, with its account and provider, or None.

    On every ingested batch and proxied call, so one hand-written query (compiling the ORM
    query cost ~1 ms of CPU, more than the database took to answer it).
    """
    if not raw.startswith(IngestKey.PREFIX):
        return None
    conn = connections[DEFAULT_DB_ALIAS]
    models = (IngestKey, ProviderAccount, Provider)
    select = ", ".join(
        f"{alias}.{conn.ops.quote_name(f.column)}"
        for alias, model in zip("kap", models, strict=True)
        for f in model._meta.concrete_fields
    )
    sql = (
        f"SELECT {select} FROM {IngestKey._meta.db_table} k "
        f"JOIN {ProviderAccount._meta.db_table} a ON a.id = k.account_id "
        f"JOIN {Provider._meta.db_table} p ON p.id = a.provider_id "
        "WHERE k.digest = %s AND k.revoked_at IS NULL AND a.is_active = %s"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, [hash_ingest_key(raw), True])
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for model in models:
        fields = model._meta.concrete_fields
        instances.append(_from_db(conn, model, row[start : start + len(fields)]))
        start += len(fields)
    key, account, provider = instances
    account.provider = provider
    key.account = account
    return key


def _from_db(conn, model, values):
    """A model instance from raw column values, converted as the ORM would."""
    converted = []
    for field, value in zip(model._meta.concrete_fields, values, strict=True):
        col = field.get_col(model._meta.db_table)
        for converter in conn.ops.get_db_converters(col) + col.get_db_converters(conn):
            value = converter(value, col, conn)
        converted.append(value)
    return model.from_db(conn.alias, [f.attname for f in model._meta.concrete_fields], converted)
