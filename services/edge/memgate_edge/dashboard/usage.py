"""The Usage page: requests, tokens (memory tokens apart) and cost per day, by model and by
key, as charts and tables, and the same rows as CSV.

Charts are SVG drawn on the server by pygal (a maintained charting library, installed with
memgate): nothing is loaded from elsewhere and the page needs no script.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import msgspec
import pygal
from litestar import Response, get
from litestar.response import Template
from markupsafe import Markup
from pygal.style import Style

from memgate_edge.dashboard.pages import DashboardPages
from memgate_edge.deps import EdgeDeps
from memgate_store.request_log import DailyUsage

RANGES = {"today": 1, "7d": 7, "30d": 30}  # days, today included
CHART_STYLE = Style(background="#fff", plot_background="#fff", foreground="#1d232b", foreground_strong="#1d232b",
                    foreground_subtle="#e2e6eb", opacity=".9", opacity_hover="1", font_family="system-ui, sans-serif",
                    colors=("#2453d6", "#d6862a", "#2a9d55", "#c0392b", "#7b4fd6", "#1aa3a3", "#9aa5b1", "#d63b8f"))
MOST_SERIES = 7  # models or keys in a chart; the rest are summed as "other"


class UsageTotals(msgspec.Struct):
    """One group's (a model's, a key's, or everything's) totals over the range."""

    name: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    memory_tokens: int = 0
    cost_usd: float = 0.0
    byok_cost_usd: float = 0.0

    def add(self, row: DailyUsage) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.memory_tokens += row.memory_tokens
        self.cost_usd += row.cost_usd
        self.byok_cost_usd += row.byok_cost_usd


def money(value: float) -> str:
    """US dollars, to the cent, or to six places below a cent (one request costs little)."""
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def days_of(range_name: str, now: datetime | None = None) -> tuple[datetime, datetime, list[date]]:
    """The range's start (midnight UTC), end (now) and days."""
    now = now or datetime.now(UTC)
    first = (now - timedelta(days=RANGES[range_name] - 1)).date()
    days = [first + timedelta(days=i) for i in range(RANGES[range_name])]
    return datetime(first.year, first.month, first.day, tzinfo=UTC), now, days


def key_label(row: DailyUsage) -> str:
    return row.key_name or (row.key_id[-8:] if row.key_id else "(no key)")


def totals_by(rows: Iterable[DailyUsage], name: Callable[[DailyUsage], str]) -> list[UsageTotals]:
    groups: dict[str, UsageTotals] = {}
    for row in rows:
        groups.setdefault(name(row), UsageTotals(name(row))).add(row)
    return sorted(groups.values(), key=lambda t: (-t.requests, t.name))


def chart(title: str, days: list[date], series: dict[str, dict[date, float]], *, in_dollars: bool = False) -> Markup:
    """A stacked bar chart, one bar a day, as inline SVG (its script left out: none may run)."""
    bars = pygal.StackedBar(style=CHART_STYLE, js=[], disable_xml_declaration=True, width=1000, height=320,
                            legend_at_bottom=True, legend_at_bottom_columns=4, show_minor_x_labels=True,
                            x_label_rotation=0 if len(days) <= 10 else 45, print_values=False,
                            value_formatter=money if in_dollars else (lambda v: f"{v:,.0f}"),
                            no_data_text="No requests in this range")
    bars.title = title
    bars.x_labels = [d.strftime("%m-%d") for d in days]
    for name, per_day in series.items():
        bars.add(name, [per_day.get(d, 0) for d in days])
    tree = bars.render_tree()
    for parent in list(tree.iter()):
        for child in [c for c in parent if c.tag == "script"]:
            parent.remove(child)
    return Markup(ElementTree.tostring(tree, encoding="unicode"))  # (pygal's etree escapes every label)


def summed(rows: Iterable[DailyUsage], value: Callable[[DailyUsage], float]) -> dict[date, float]:
    """`value` summed per day."""
    days: dict[date, float] = defaultdict(float)
    for row in rows:
        days[row.day] += value(row)
    return dict(days)


def per_day(rows: Iterable[DailyUsage], value: Callable[[DailyUsage], float],
            name: Callable[[DailyUsage], str]) -> dict[str, dict[date, float]]:
    """`value` summed per series `name` and day; beyond MOST_SERIES series the rest are "other"."""
    series: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        series[name(row)][row.day] += value(row)
    ranked = sorted(series, key=lambda n: -sum(series[n].values()))
    if len(ranked) <= MOST_SERIES:
        return {n: dict(series[n]) for n in ranked}
    kept = {n: dict(series[n]) for n in ranked[:MOST_SERIES - 1]}
    other: dict[date, float] = defaultdict(float)
    for n in ranked[MOST_SERIES - 1:]:
        for d, v in series[n].items():
            other[d] += v
    return {**kept, "other": dict(other)}


def usage_csv(rows: Iterable[DailyUsage]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day", "model", "key_name", "key_id", "requests", "errors", "input_tokens", "memory_tokens",
                     "output_tokens", "cost_usd", "byok_cost_usd"])
    for r in rows:
        writer.writerow([r.day.isoformat(), r.model, r.key_name or "", r.key_id or "", r.requests, r.errors,
                         r.input_tokens, r.memory_tokens, r.output_tokens, f"{r.cost_usd:.8f}", f"{r.byok_cost_usd:.8f}"])
    return out.getvalue()


class UsagePages(DashboardPages):
    path = "/dashboard/usage"

    async def _rows(self, tenant: str, deps: EdgeDeps, range_name: str) -> tuple[list[date], list[DailyUsage]]:
        since, until, days = days_of(range_name)
        return days, await deps.stores.request_log.daily(tenant, since, until)

    @get("/")
    async def usage(self, deps: EdgeDeps, tenant: str, range: str = "7d") -> Template:
        """Charts and tables of the tenant's usage over today, 7 or 30 days."""
        range_name = range if range in RANGES else "7d"
        days, rows = await self._rows(tenant, deps, range_name)
        charts = [
            chart("Requests per day, by model", days, per_day(rows, lambda r: r.requests, lambda r: r.model)),
            chart("Tokens per day (memory tokens are part of the input)", days, {
                "input (without memory)": summed(rows, lambda r: max(r.input_tokens - r.memory_tokens, 0)),
                "memory": summed(rows, lambda r: r.memory_tokens),
                "output": summed(rows, lambda r: r.output_tokens),
            }),
            chart("Cost per day (US $), by model", days, per_day(rows, lambda r: r.cost_usd, lambda r: r.model),
                  in_dollars=True),
            chart("Requests per day, by key", days, per_day(rows, lambda r: r.requests, key_label)),
        ]
        total = UsageTotals("all")
        for row in rows:
            total.add(row)
        return self._page("usage.html", deps, tenant=tenant, active="Usage", range=range_name, ranges=list(RANGES), money=money,
                          charts=charts, total=total, by_model=totals_by(rows, lambda r: r.model),
                          by_key=totals_by(rows, key_label))

    @get("/export.csv")
    async def export(self, deps: EdgeDeps, tenant: str, range: str = "7d") -> Response[str]:
        """The usage rows behind the page: one per day, model and key."""
        range_name = range if range in RANGES else "7d"
        _, rows = await self._rows(tenant, deps, range_name)
        return Response(usage_csv(rows), media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="memgate-usage-{range_name}.csv"'})
