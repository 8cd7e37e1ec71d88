"""Anthropic Admin API: cost report and messages usage report (admin key)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from providers.adapters.base import (
    ProviderAdapter,
    UsageFormat,
    UsageLine,
    get_dict,
    get_int,
    get_list,
    get_str,
    jsonable,
    merge_lines,
    shape_error,
    to_decimal,
    utc_today,
)
from providers.http import paginate_cursor
from providers.proxy.routes import Route
from providers.ratelimits.readings import (
    RateLimitReading,
    Window,
    lowered,
    parse_timestamp,
    retry_at,
    window,
)

PAGE_LIMIT = 31  # buckets per page; the maximum for 1d buckets on both reports (§2.2, §2.3)
API_VERSION = "2023-06-01"


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _bucket_day(bucket: Mapping[str, Any]) -> date:
    value = bucket.get("starting_at")
    if not isinstance(value, str):
        raise shape_error("'starting_at' should be an RFC 3339 string", bucket)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise shape_error("'starting_at' should be an RFC 3339 string", bucket) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


class AnthropicAdapter(ProviderAdapter):
    """Anthropic: official daily money from the cost report, tokens from the usage report.

    Cost lines (one per day × model × description) carry money; token lines (one per day ×
    model) carry counts with ``cost=None``. Results split further by the API (workspace, service
    tier, context window) are summed, because the usage record is unique per day × model × item.
    Known gaps (§2.4): Priority Tier money is missing from the cost report, and code execution
    appears only there.
    """

    kind = "anthropic"
    secret_shapes = (r"\bsk-ant-[A-Za-z0-9_\-]{12,}",)  # sk-ant-api…, sk-ant-admin…
    label = "Anthropic"
    supports_sync = True
    default_base_url = "https://api.anthropic.com"
    api_prefix = "/v1"
    catalogue_name = "Anthropic"
    description = "Official daily cost and usage reports via the Admin API (admin key)."
    base_url_setting = "ANTHROPIC_BASE_URL"
    chart_colour, chart_pattern = "#b5522f", "dots"
    secret_field = "admin_key"
    admin_key_hint = "Anthropic sk-ant-admin…"
    proxy_routes = {
        # A complete stream always ends with message_stop: usage alone cannot tell a cut
        # stream, since it arrives in message_start.
        "v1/messages": Route("POST", "v1/messages", end_marker=b'"message_stop"'),
        "v1/models": Route("GET", "v1/models", records=False),
    }
    usage_format = UsageFormat.MESSAGES
    proxy_forwarded_headers = ("anthropic-version", "anthropic-beta")
    proxy_returned_header_prefixes = ("anthropic-",)
    litellm_providers = ("anthropic",)
    otel_provider_names = ("anthropic",)

    @classmethod
    def proxy_error_body(cls, kind: str, message: str) -> dict:
        return {"type": "error", "error": {"type": kind, "message": message}}

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """Messages usage: input_tokens EXCLUDES cache reads and writes (ref §7)."""
        from usage.extraction.parsing import count_of as _count
        from usage.extraction.parsing import dict_of as _dict

        result.input_tokens = _count(usage.get("input_tokens"), f"{path}.input_tokens")
        field = f"{path}.cache_read_input_tokens"
        result.cache_read_tokens = _count(usage.get("cache_read_input_tokens"), field)
        field = f"{path}.cache_creation_input_tokens"
        written = _count(usage.get("cache_creation_input_tokens"), field)
        breakdown = usage.get("cache_creation")
        if isinstance(breakdown, dict):
            five = _count(
                breakdown.get("ephemeral_5m_input_tokens"),
                f"{path}.cache_creation.ephemeral_5m_input_tokens",
            )
            hour = _count(
                breakdown.get("ephemeral_1h_input_tokens"),
                f"{path}.cache_creation.ephemeral_1h_input_tokens",
            )
            # Writes the breakdown does not attribute bill at the base (5-minute) write rate,
            # as LiteLLM does, rather than vanishing.
            result.cache_write_tokens = five + max(written - five - hour, 0)
            result.cache_write_1h_tokens = hour
        else:
            result.cache_write_tokens = written
        result.output_tokens = _count(usage.get("output_tokens"), f"{path}.output_tokens")
        field = f"{path}.output_tokens_details.thinking_tokens"
        thinking = _count(_dict(usage.get("output_tokens_details")).get("thinking_tokens"), field)
        result.reasoning_tokens = min(thinking, result.output_tokens)
        field = f"{path}.server_tool_use.web_search_requests"
        searches = _dict(usage.get("server_tool_use")).get("web_search_requests")
        result.search_queries = _count(searches, field)

    @classmethod
    def rate_limit_reading(cls, headers: Mapping[str, str], *, now: datetime) -> Any | None:
        """anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,
        reset}, resets as RFC 3339 timestamps; retry-after (seconds) on 429."""
        # Reference: provider-apis.md §7 "Rate-limit headers" (docs rate-limits.md)
        h = lowered(headers)

        def dimension(name: str) -> Window | None:
            prefix = f"anthropic-ratelimit-{name}"
            return window(
                h.get(f"{prefix}-limit"),
                h.get(f"{prefix}-remaining"),
                parse_timestamp(h.get(f"{prefix}-reset")),
            )

        reading = RateLimitReading(
            requests=dimension("requests"),
            tokens=dimension("tokens"),
            input_tokens=dimension("input-tokens"),
            output_tokens=dimension("output-tokens"),
            retry_at=retry_at(h, now=now),
        )
        return None if reading.empty else reading

    @classmethod
    def proxy_auth_headers(cls, headers: dict[str, str], provider_key: str) -> None:
        headers.setdefault("anthropic-version", API_VERSION)
        headers["x-api-key"] = provider_key

    def _headers(self) -> dict[str, str]:
        # Reference: provider-apis.md §2.1
        return {"x-api-key": self.secret, "anthropic-version": API_VERSION}

    def test_connection(self) -> str:
        today = utc_today()
        # Reference: provider-apis.md §2.3 (a one-day cost report is the cheapest admin call)
        body = self._get(
            "/v1/organizations/cost_report",
            params={
                "starting_at": _rfc3339(today - timedelta(days=1)),
                "ending_at": _rfc3339(today),
                "limit": 1,
            },
            max_tries=self.test_max_tries,
        )
        get_list(body, "data")
        return "Connected to Anthropic organization"

    def fetch_daily_usage(self, *, start: date, end: date) -> list[UsageLine]:
        if start >= end:
            return []
        return merge_lines([*self._cost_lines(start, end), *self._token_lines(start, end)])

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
                day = _bucket_day(bucket)
                if start <= day < end:
                    yield day, get_list(bucket, "results")

    def _window(self, start: date, end: date) -> dict[str, Any]:
        return {
            "starting_at": _rfc3339(start),
            "ending_at": _rfc3339(end),
            "bucket_width": "1d",
            "limit": PAGE_LIMIT,
        }

    def _cost_lines(self, start: date, end: date) -> Iterator[UsageLine]:
        params = {**self._window(start, end), "group_by[]": ["description"]}
        # Reference: provider-apis.md §2.3
        for day, results in self._buckets("/v1/organizations/cost_report", params, start, end):
            for result in results:
                yield self._parse_cost(day, result)

    def _token_lines(self, start: date, end: date) -> Iterator[UsageLine]:
        params = {**self._window(start, end), "group_by[]": ["model"]}
        # Reference: provider-apis.md §2.2
        path = "/v1/organizations/usage_report/messages"
        for day, results in self._buckets(path, params, start, end):
            for result in results:
                yield self._parse_usage(day, result)

    @staticmethod
    def _parse_cost(day: date, result: Any) -> UsageLine:
        if not isinstance(result, dict):
            raise shape_error("cost result should be an object", result)
        if result.get("amount") is None:
            raise shape_error("'amount' is missing", result)
        # A decimal string in cents: "123.45" is $1.2345. scaleb shifts the exponent, so the
        # division by 100 is exact whatever the number of digits.
        cents = to_decimal(result["amount"], "amount", result)
        description = get_str(result, "description")
        cost_type = get_str(result, "cost_type")
        return UsageLine(
            day=day,
            model=get_str(result, "model"),
            line_item=description or f"cost:{cost_type or 'other'}",
            cost=cents.scaleb(-2),
            currency=(get_str(result, "currency") or "USD").upper(),
            raw=jsonable(result),
        )

    @staticmethod
    def _parse_usage(day: date, result: Any) -> UsageLine:
        if not isinstance(result, dict):
            raise shape_error("usage result should be an object", result)
        # Current schema nests cache writes; a 2025 schema had them flat (§2.2). Accept both.
        nested = get_dict(result, "cache_creation", required=False)
        if nested:
            write_5m = get_int(nested, "ephemeral_5m_input_tokens")
            write_1h = get_int(nested, "ephemeral_1h_input_tokens")
        else:
            write_5m = get_int(result, "cache_creation_5m_input_tokens")
            write_1h = get_int(result, "cache_creation_1h_input_tokens")
        tools = get_dict(result, "server_tool_use", required=False)
        return UsageLine(
            day=day,
            model=get_str(result, "model"),
            line_item="tokens:messages",
            input_tokens=get_int(result, "uncached_input_tokens", required=True),
            cache_read_tokens=get_int(result, "cache_read_input_tokens"),
            cache_write_tokens=write_5m,
            cache_write_1h_tokens=write_1h,
            output_tokens=get_int(result, "output_tokens", required=True),
            search_queries=get_int(tools, "web_search_requests"),
            raw=jsonable(result),
        )
