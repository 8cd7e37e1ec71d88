"""GitHub Copilot: seats (priced per seat-month) and premium request / AI credit money."""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from providers.adapters.base import (
    ProviderAdapter,
    Setting,
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
from providers.http import JsonResponse, ProviderError

SEATS_PER_PAGE = 100  # the maximum (§3.3)
MAX_SEAT_PAGES = 500
# Reference: provider-apis.md §3.6 (list prices per seat-month, USD)
DEFAULT_SEAT_PRICES = {"business": Decimal(19), "enterprise": Decimal(39)}
# From June 2026 Business/Enterprise model usage is billed in AI credits instead of premium
# requests (§3.6); each day is read from the endpoint that bills it, so nothing counts twice.
AI_CREDITS_FROM = date(2026, 6, 1)
BILLING_HISTORY_DAYS = 730  # billing usage only covers the past 24 months (§3.5)
MONEY_PLACES = Decimal("1e-10")  # the usage record's decimal places


def _utc_date(value: Any) -> date | None:
    """A GitHub date or datetime string as a UTC date; None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


class CopilotAdapter(ProviderAdapter):
    """GitHub Copilot for one organization (``config["organization"]``).

    Seat lines: one per day × plan, ``seats`` = seats assigned that day, ``cost`` = seats × the
    monthly seat price ÷ days in that month (GitHub prorates seats by day). The API only lists
    seats that exist now, so past days miss seats removed since; GitHub's own invoice is the
    reconciling figure.

    Model usage lines: official money per day × model from the premium request usage report
    (before June 2026) or the AI credit usage report (from June 2026), ``cost`` = ``netAmount``
    (dollars, after the included allowance). Set ``config["include_billing_usage"] = False`` for
    tokens that may read seats but not billing.
    """

    kind = "copilot"
    secret_shapes = (
        r"\bgh[pousr]_[A-Za-z0-9_]{16,}",
        r"\bgithub_pat_[A-Za-z0-9_]{16,}",
    )  # classic, fine-grained
    label = "GitHub Copilot"
    supports_sync = True
    default_base_url = "https://api.github.com"
    catalogue_name = "GitHub Copilot"
    description = "Seats and premium requests via the GitHub REST API (token + organization)."
    base_url_setting = "GITHUB_API_URL"
    chart_colour, chart_pattern = "#6e40c9", "cross"
    secret_field = "admin_key"
    admin_key_hint = "a GitHub token"
    settings = (
        Setting(
            "organization",
            str,
            "GitHub organization",
            "The organization whose Copilot seats and usage are synced.",
            required=True,
            max_length=100,
        ),
        Setting(
            "include_billing_usage",
            bool,
            "Sync premium requests / AI credits",
            "Turn off for a token that may read seats but not billing.",
            default=True,
        ),
        *(
            Setting(
                f"seat_price_{plan}",
                Decimal,
                f"{plan.title()} seat price (USD/month)",
                f"Empty: the list price, ${price}.",
                min_value=Decimal(0),
                max_value=Decimal(10_000),
                decimal_places=2,
            )
            for plan, price in DEFAULT_SEAT_PRICES.items()
        ),
    )

    @classmethod
    def costing(
        cls,
        usage: Any,
        price: Any,
        *,
        compute_rate_per_hour: Decimal | None = None,
        account_config: Mapping[str, Any] | None = None,
    ) -> Any:
        """Copilot bills premium requests, not tokens (ref §3.6): request_count × per_request
        when the price has one."""
        from usage.pricing import Costing, CostLine, Rule

        if price is not None and price.per_request is not None:
            count, rate = usage.request_count, price.per_request
            line = CostLine("premium_request", count, rate, count * rate)
            return Costing(Rule.PER_REQUEST, (line,))
        return super().costing(
            usage, price, compute_rate_per_hour=compute_rate_per_hour, account_config=account_config
        )

    def _headers(self) -> dict[str, str]:
        # Reference: provider-apis.md §3.1
        return {
            "Authorization": f"Bearer {self.secret}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    @property
    def organization(self) -> str:
        org = str(self.config.get("organization") or "").strip()
        if not org:
            raise ProviderError("organization not set", permanent=True)
        return org

    def _org_path(self, template: str) -> str:
        return template.format(org=quote(self.organization, safe=""))

    def _org_get(
        self, template: str, *, params: dict[str, Any] | None = None, max_tries: int = 4
    ) -> JsonResponse:
        path = self._org_path(template)
        try:
            return self._get_response(path, params=params, max_tries=max_tries)
        except ProviderError as exc:
            # GitHub answers 404 both for a mistyped org and for one the token cannot see.
            if exc.status == 404:
                raise ProviderError(
                    "organization not found",
                    permanent=True,
                    status=404,
                    body_excerpt=exc.body_excerpt,
                ) from exc
            raise

    def test_connection(self) -> str:
        # Reference: provider-apis.md §3.2
        body = self._org_get("/orgs/{org}/copilot/billing", max_tries=self.test_max_tries).body
        total = get_int(get_dict(body, "seat_breakdown"), "total")
        plan = get_str(body, "plan_type") or "unknown plan"
        return (
            f"Connected to GitHub organization {self.organization} (Copilot {plan}, {total} seats)"
        )

    def fetch_daily_usage(self, *, start: date, end: date) -> list[UsageLine]:
        # Nothing is known about days that have not started yet.
        end = min(end, utc_today() + timedelta(days=1))
        if start >= end:
            return []
        # Reference: provider-apis.md §3.2
        billing = self._org_get("/orgs/{org}/copilot/billing").body
        lines = list(self._seat_lines(billing, self._seats(), start, end))
        if self.config.get("include_billing_usage", True):
            lines.extend(self._billing_usage_lines(start, end))
        return merge_lines(lines)

    # --- seats ---

    def _seats(self) -> list[dict[str, Any]]:
        seats: list[dict[str, Any]] = []
        for page in range(1, MAX_SEAT_PAGES + 1):
            # Reference: provider-apis.md §3.3
            response = self._org_get(
                "/orgs/{org}/copilot/billing/seats",
                params={"page": page, "per_page": SEATS_PER_PAGE},
            )
            batch = get_list(response.body, "seats")
            seats.extend(seat for seat in batch if isinstance(seat, dict))
            link = response.headers.get("Link")
            more = 'rel="next"' in link if link is not None else len(batch) >= SEATS_PER_PAGE
            if not more or not batch:
                return seats
        raise ProviderError(f"pagination stopped after {MAX_SEAT_PAGES} pages (page limit)")

    def _seat_price(self, plan: str) -> Decimal | None:
        configured = self.config.get(f"seat_price_{plan}")
        if configured not in (None, ""):
            return to_decimal(configured, f"seat_price_{plan}", {"plan": plan})
        return DEFAULT_SEAT_PRICES.get(plan)

    def _seat_lines(
        self, billing: dict[str, Any], seats: list[dict[str, Any]], start: date, end: date
    ) -> Iterator[UsageLine]:
        org_plan = (get_str(billing, "plan_type") or "business").lower()
        total = get_int(get_dict(billing, "seat_breakdown"), "total")
        for day in _days(start, end):
            counts: dict[str, int] = {}
            for seat in seats:
                created = _utc_date(seat.get("created_at"))
                cancels = _utc_date(seat.get("pending_cancellation_date"))
                if (created is None or created <= day) and (cancels is None or day < cancels):
                    plan = (get_str(seat, "plan_type") or org_plan).lower()
                    counts[plan] = counts.get(plan, 0) + 1
            if not seats and total:
                # The listing can be empty while the summary bills seats (e.g. pending
                # invitations); the summary is then the only count there is.
                counts = {org_plan: total}
            days_in_month = calendar.monthrange(day.year, day.month)[1]
            for plan, count in sorted(counts.items()):
                price = self._seat_price(plan)
                cost = None
                if price is not None:
                    cost = (count * price / days_in_month).quantize(MONEY_PLACES, ROUND_HALF_UP)
                yield UsageLine(
                    day=day,
                    model="",
                    line_item=f"seats:{plan}",
                    seats=Decimal(count),
                    cost=cost,
                    raw={
                        "plan_type": plan,
                        "seats": count,
                        "seat_price_per_month": str(price) if price is not None else None,
                        "days_in_month": days_in_month,
                        "seat_breakdown": jsonable(billing.get("seat_breakdown")),
                    },
                )

    # --- premium requests / AI credits ---

    def _billing_usage_lines(self, start: date, end: date) -> Iterator[UsageLine]:
        oldest = utc_today() - timedelta(days=BILLING_HISTORY_DAYS)
        unavailable: set[str] = set()
        for day in _days(max(start, oldest), end):
            kind = "ai_credit" if day >= AI_CREDITS_FROM else "premium_request"
            if kind in unavailable:
                continue
            params = {"year": day.year, "month": day.month, "day": day.day}
            try:
                # Reference: provider-apis.md §3.5 (items 3 and 4)
                body = self._get(
                    self._org_path(f"/organizations/{{org}}/settings/billing/{kind}/usage"),
                    params=params,
                )
            except ProviderError as exc:
                # Only orgs on the enhanced billing platform have these reports (§3.5); the
                # others still get their seat lines.
                if exc.status == 404:
                    unavailable.add(kind)
                    continue
                raise
            yield from self._parse_billing_usage(kind, day, body)

    @staticmethod
    def _parse_billing_usage(kind: str, day: date, body: dict[str, Any]) -> Iterator[UsageLine]:
        period = get_dict(body, "timePeriod", required=False)
        if period.get("day") not in (None, day.day):
            raise shape_error("timePeriod does not match the requested day", body)
        for item in get_list(body, "usageItems"):
            if not isinstance(item, dict):
                raise shape_error("usage item should be an object", body)
            # UNCONFIRMED: items are documented without a date; if one appears, keep only the
            # requested day so a report that ignores the day filter is not counted many times.
            item_day = _utc_date(item.get("date"))
            if item_day is not None and item_day != day:
                continue
            quantity = to_decimal(item.get("grossQuantity"), "grossQuantity", item)
            net = to_decimal(item.get("netAmount"), "netAmount", item)
            if not quantity and not net:
                continue
            # Premium requests can be fractional (model multipliers); the exact figure is in raw.
            requests_made = int(quantity.to_integral_value(ROUND_HALF_UP))
            yield UsageLine(
                day=day,
                model=get_str(item, "model"),
                line_item="ai_credits" if kind == "ai_credit" else "premium_requests",
                request_count=0 if kind == "ai_credit" else requests_made,
                credits=quantity if kind == "ai_credit" else Decimal(0),
                cost=net,
                raw=jsonable(item),
            )
