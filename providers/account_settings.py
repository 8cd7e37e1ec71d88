"""An account's provider settings: typed, declared by each provider's adapter (``settings``).

``ProviderAccount.config`` stores them (str and bool as themselves, Decimal as a plain decimal
string), but nothing reads or writes that column as a free bag: the service validates every
write with :func:`settings_clean`, the API and pages show :func:`settings_values`, and the form
fields and the OpenAPI schema are generated here from the same declarations. This module names
no provider; a provider's settings change in its adapter module only.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from providers.adapters.base import Setting
from providers.registry import ADAPTERS, get_adapter_class


def settings_of(kind: str) -> tuple[Setting, ...]:
    return get_adapter_class(kind).settings


def plain_decimal_str(value: Decimal) -> str:
    """``Decimal("0.40")`` -> "0.4", ``Decimal("1E+2")`` -> "100": one spelling per number."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def setting_form_field(setting: Setting, **overrides: Any) -> forms.Field:
    """The Django form field for one declared setting (also the validator of API input)."""
    common = {
        "label": setting.label,
        "help_text": setting.help_text,
        "required": setting.required,
        **overrides,
    }
    if setting.type is bool:
        return forms.BooleanField(**{**common, "required": False})
    if setting.type is Decimal:
        return forms.DecimalField(
            min_value=setting.min_value,
            max_value=setting.max_value,
            max_digits=20,
            decimal_places=setting.decimal_places,
            **common,
        )
    return forms.CharField(max_length=setting.max_length, strip=True, **common)


def _clean_one(setting: Setting, value: Any) -> Any:
    """One value from JSON, a form or a caller, as stored; ValidationError with a message."""
    if setting.type is bool:
        if value is None:
            return setting.default
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value
    if setting.type is Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal, type(None))):
            raise ValidationError("Must be a number (a decimal string).")
        if isinstance(value, float):
            value = repr(value)
    elif value is not None and not isinstance(value, str):
        raise ValidationError("Must be a string.")
    cleaned = setting_form_field(setting, required=False).clean("" if value is None else value)
    if cleaned in (None, ""):
        return None
    return plain_decimal_str(cleaned) if setting.type is Decimal else cleaned


def settings_defaults(kind: str) -> dict[str, Any]:
    return {s.name: s.default for s in settings_of(kind)}


def settings_clean(
    *, kind: str, values: Mapping[str, Any] | None, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate ``values`` for a ``kind`` account and return the settings to store.

    Keys left out keep their value in ``base`` (the stored settings of an account of the same
    kind) or get their default; ``None`` resets one to its default. The result holds every
    declared key. Raises ValidationError keyed by setting name, for an unknown key too.
    """
    if values is not None and not isinstance(values, Mapping):
        raise ValidationError({"config": ["Must be a JSON object."]})
    declared = {s.name: s for s in settings_of(kind)}
    label = ADAPTERS[kind][0]
    errors: dict[str, list[str]] = {}
    for key in values or {}:
        if key not in declared:
            known = ", ".join(declared) or "none"
            errors[str(key)] = [f"Unknown setting for {label} (known: {known})."]
    result = settings_defaults(kind)
    for name in declared:
        if base and name in base:
            result[name] = base[name]
    for name, setting in declared.items():
        raw = (values or {}).get(name, result[name])
        try:
            result[name] = _clean_one(setting, raw)
        except ValidationError as exc:
            errors[name] = exc.messages
            continue
        if setting.required and result[name] in (None, ""):
            errors[name] = [f"{label} needs this setting."]
    if errors:
        raise ValidationError(errors)
    return result


def settings_values(*, kind: str, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared setting of an account as the API and pages show it (defaults filled in).

    Sending this back unchanged stores the same settings (a lossless round trip).
    """
    stored = stored or {}
    out: dict[str, Any] = {}
    for setting in settings_of(kind):
        value = stored.get(setting.name, setting.default)
        if setting.type is Decimal and value not in (None, ""):
            value = plain_decimal_str(Decimal(str(value)))
        out[setting.name] = value
    return out


def settings_form_fields() -> dict[str, tuple[str, str, forms.Field]]:
    """Form fields for every provider's settings: ``{field name: (kind, setting name, field)}``.

    Field names are ``<kind>_<setting>``, so two providers may declare the same setting name.
    Required-ness depends on the chosen provider, so it is checked by settings_clean, not here.
    """
    fields = {}
    for kind, (label, _) in ADAPTERS.items():
        for setting in settings_of(kind):
            field = setting_form_field(setting, label=f"{label}: {setting.label}", required=False)
            field.widget.attrs["data-provider"] = kind
            fields[f"{kind}_{setting.name}"] = (kind, setting.name, field)
    return fields


def _setting_schema(setting: Setting, label: str) -> dict[str, Any]:
    if setting.type is bool:
        schema: dict[str, Any] = {"type": "boolean"}
    elif setting.type is Decimal:
        schema = {"type": "string", "format": "decimal", "nullable": True}
    else:
        schema = {"type": "string", "maxLength": setting.max_length}
        if not setting.required:
            schema["nullable"] = True
    description = f"{label}: {setting.label}."
    if setting.help_text:
        description += " " + setting.help_text
    if setting.default is not None:
        schema["default"] = setting.default
    return {**schema, "description": description}


def settings_openapi_schema() -> dict[str, Any]:
    """The ``config`` object in OpenAPI: one alternative per provider, no other keys."""
    alternatives = []
    for kind, (label, _) in ADAPTERS.items():
        declared = settings_of(kind)
        alternatives.append(
            {
                "type": "object",
                "title": f"{label} settings",
                "properties": {s.name: _setting_schema(s, label) for s in declared},
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "description": "The provider's settings; which keys exist depends on `provider`. "
        "A key left out keeps its value, null resets it to its default; an unknown key is "
        "refused (400 naming it).",
        "anyOf": alternatives,
    }
