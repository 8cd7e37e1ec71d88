"""OpenAI organization Costs API and Usage API (admin key)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from providers.adapters.base import (
    ProviderAdapter,
    UsageLine,
    get_dict,
    get_int,
    get_list,
    get_str,
    jsonable,
    merge_lines,
    shape_error,
    to_decimal,
    utc_midnight,
    utc_today,
)
from providers.http import paginate_cursor
from providers.proxy.routes import openai_style_routes
from providers.ratelimits.readings import openai_style_reading

COSTS_PAGE_LIMIT = 180  # buckets per page; the Costs API maximum (§1.6)
USAGE_PAGE_LIMIT = 31  # buckets per page; the Usage API maximum for 1d buckets (§1.2)


def _unix(day: date) -> int:
    return int(utc_midnight(day).timestamp())


def model_from_line_item(label: str) -> str:
    """Best-effort model name from a cost line label such as ``"gpt-4o-mini, input"``.

    The label is free text with no documented grammar (§1.6, UNCONFIRMED), so anything that does
    not look like ``"<model>, <kind>"`` (optionally prefixed ``"evals | "``) gives ``""``.
    """
    head, sep, _ = label.rpartition(", ")
    if not sep:
        return ""
    head = head.rpartition(" | ")[2].strip()
    if not head or any(ch.isspace() for ch in head):
        return ""
    return head


class OpenAIAdapter(ProviderAdapter):
    """OpenAI: official daily money from ``/organization/costs``, tokens from ``/usage/*``.

    Cost lines carry the money (one per day × cost line item); token lines carry counts per
    day × model with ``cost=None``, because OpenAI only reports money on cost lines and adding a
    price to the token lines would count it twice.
    """

    kind = "openai"
    secret_shapes = (r"\bsk-[A-Za-z0-9_\-]{12,}",)  # sk-, sk-proj-, sk-admin-
    label = "OpenAI"
    supports_sync = True
    default_base_url = "https://api.openai.com"
    api_prefix = "/v1"
    catalogue_name = "OpenAI"
    description = (
        "Official daily costs and token usage via the organization Usage/Costs API (admin key)."
    )
    base_url_setting = "OPENAI_BASE_URL"
    chart_colour, chart_pattern = "#0f7b61", "diagonal"
    secret_field = "admin_key"
    admin_key_hint = "OpenAI sk-admin-…"
    proxy_routes = openai_style_routes()
    proxy_forwarded_headers = ("openai-organization", "openai-project", "openai-beta")
    proxy_returned_header_prefixes = ("openai-",)
    litellm_providers = ("openai", "text-completion-openai")
    otel_provider_names = ("openai",)

    @classmethod
    def rate_limit_reading(cls, headers: Mapping[str, str], *, now: datetime) -> Any | None:
        """x-ratelimit-{limit,remaining,reset}-{requests,tokens} on every response, resets
        as Go-style durations (requests and tokens per minute)."""
        # Reference: providers-more.md §6 "OpenAI (every response)"
        reading = openai_style_reading(headers, now=now)
        return None if reading.empty else reading

    def _headers(self) -> dict[str, str]:
        # Reference: provider-apis.md §1.1 (admin key as a bearer token)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        today = utc_today()
        # Reference: provider-apis.md §1.6 (a one-bucket cost query is the cheapest admin call)
        body = self._get(
            "/v1/organization/costs",
            params={
                "start_time": _unix(today - timedelta(days=1)),
                "end_time": _unix(today),
                "bucket_width": "1d",
                "limit": 1,
            },
            max_tries=self.test_max_tries,
        )
        get_list(body, "data")
        return "Connected to OpenAI organization"

    def fetch_daily_usage(self, *, start: date, end: date) -> list[UsageLine]:
        if start >= end:
            return []
        lines = [
            *self._cost_lines(start, end),
            *self._token_lines("completions", start, end),
            *self._token_lines("embeddings", start, end),
        ]
        return merge_lines(lines)

    # --- fetching ---

    def _buckets(
        self, path: str, params: Mapping[str, Any], start: date, end: date
    ) -> Iterator[tuple[date, list[Any]]]:
        def fetch(cursor: str | None) -> dict[str, Any]:
            query = dict(params)
            if cursor:
                query["page"] = cursor
            return self._get(path, params=query)

        for page in paginate_cursor(fetch):
            for bucket in get_list(page, "data"):
                if not isinstance(bucket, dict):
                    raise shape_error("bucket should be an object", page)
                start_time = get_int(bucket, "start_time", required=True)
                day = datetime.fromtimestamp(start_time, UTC).date()
                # start_time is aligned to midnight, but a provider echoing a wider range must
                # not leak days the caller did not ask for (they may belong to another sync).
                if start <= day < end:
                    yield day, get_list(bucket, "results")

    def _window(self, start: date, end: date) -> dict[str, Any]:
        return {"start_time": _unix(start), "end_time": _unix(end), "bucket_width": "1d"}

    def _cost_lines(self, start: date, end: date) -> Iterator[UsageLine]:
        params = {
            **self._window(start, end),
            "group_by[]": ["line_item"],
            "limit": COSTS_PAGE_LIMIT,
        }
        # Reference: provider-apis.md §1.6
        for day, results in self._buckets("/v1/organization/costs", params, start, end):
            for result in results:
                yield self._parse_cost(day, result)

    def _token_lines(self, endpoint: str, start: date, end: date) -> Iterator[UsageLine]:
        params = {**self._window(start, end), "group_by[]": ["model"], "limit": USAGE_PAGE_LIMIT}
        parse = self._parse_completions if endpoint == "completions" else self._parse_embeddings
        # Reference: provider-apis.md §1.3, §1.5 (completions and embeddings usage)
        path = f"/v1/organization/usage/{endpoint}"
        for day, results in self._buckets(path, params, start, end):
            for result in results:
                yield parse(day, result)

    # --- parsing ---

    @staticmethod
    def _parse_cost(day: date, result: Any) -> UsageLine:
        if not isinstance(result, dict):
            raise shape_error("cost result should be an object", result)
        amount = get_dict(result, "amount")
        # Dollars, not cents; sent as a number or (seen live) a string (§1.6).
        cost = to_decimal(amount.get("value"), "amount.value", result)
        currency = (get_str(amount, "currency") or "usd").upper()
        label = get_str(result, "line_item")
        return UsageLine(
            day=day,
            model=model_from_line_item(label),
            # Ungrouped or unlabelled money still needs a unique, non-empty key.
            line_item=label or "cost:other",
            cost=cost,
            currency=currency,
            raw=jsonable(result),
        )

    @staticmethod
    def _parse_completions(day: date, result: Any) -> UsageLine:
        if not isinstance(result, dict):
            raise shape_error("usage result should be an object", result)
        total_input = get_int(result, "input_tokens", required=True)
        cached = get_int(result, "input_cached_tokens")
        cache_write = get_int(result, "input_cache_write_tokens")
        if result.get("input_uncached_tokens") is not None:
            uncached = get_int(result, "input_uncached_tokens")
        else:
            # Older accounts lack the split; input_tokens includes cache reads and writes (§1.5).
            uncached = max(total_input - cached - cache_write, 0)
        return UsageLine(
            day=day,
            model=get_str(result, "model"),
            line_item="tokens:completions",
            input_tokens=uncached,
            cache_read_tokens=cached,
            cache_write_tokens=cache_write,
            output_tokens=get_int(result, "output_tokens", required=True),
            request_count=get_int(result, "num_model_requests", required=True),
            raw=jsonable(result),
        )

    @staticmethod
    def _parse_embeddings(day: date, result: Any) -> UsageLine:
        if not isinstance(result, dict):
            raise shape_error("usage result should be an object", result)
        return UsageLine(
            day=day,
            model=get_str(result, "model"),
            line_item="tokens:embeddings",
            input_tokens=get_int(result, "input_tokens", required=True),
            request_count=get_int(result, "num_model_requests", required=True),
            raw=jsonable(result),
        )
