"""Draw Grafana panels with matplotlib, apart from render_dashboards.py's demo run and layout."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

STEP_S = 2.0  # the range queries' step: one sample's width in the state timeline and heatmap
# Grafana's dark theme
BG, PANEL_BG, BORDER, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#c4162a", "#1f60c4"]
NAMED = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a",
         "blue": "#5794f2", "text": TEXT, "dark-red": "#c4162a", "semi-dark-red": "#e02f44",
         "transparent": PANEL_BG, "purple": "#b877d9"}
NOW = [time.time()]  # the end of the rendered range, for "x s ago"; render() sets NOW[0]
ADDRESS = re.compile(r"0x([0-9a-f]{4})[0-9a-f]{32}([0-9a-f]{4})")


# ---- formatting ---------------------------------------------------------------------------

def short(text: str) -> str:
    """Shorten 0x addresses so legends and tables stay readable."""
    return ADDRESS.sub(r"0x\1…\2", text)


def fmt(value: float, unit: str | None) -> str:
    """Format a value like Grafana's unit of the same name."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "No data"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        magnitude = abs(value)
        if magnitude < 1:
            return f"{value * 1000:.0f} ms"
        if magnitude < 60:
            return f"{value:.1f} s"
        if magnitude < 3600:
            return f"{value / 60:.1f} min"
        return f"{value / 3600:.1f} hour"
    if unit == "reqps":
        return f"{value:.2f} req/s"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit in ("dateTimeFromNow", "dateTimeAsIso"):
        return datetime.fromtimestamp(value / 1000).strftime("%Y-%m-%d %H:%M:%S")
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.2f} Mil"
    if magnitude >= 1e3:
        return f"{value / 1e3:.2f} K"
    if magnitude >= 10 or magnitude == int(magnitude):
        return f"{value:.0f}"
    return f"{value:.3g}" if magnitude < 1 else f"{value:.1f}"


def legend(fmt_: str | None, labels: dict[str, str]) -> str:
    """Apply a Grafana legendFormat to a series' labels."""
    if not fmt_ or fmt_ == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return short(labels.get("__name__", "") + ("{" + inner + "}" if inner else ""))
    return short(re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt_))


def color_of(name: str) -> str:
    """Resolve a Grafana color name or hex."""
    return NAMED.get(name, name if name.startswith("#") else TEXT)


def threshold_color(value: float, defaults: dict[str, Any]) -> str:
    """Pick the color of the highest threshold step not above value."""
    color = TEXT
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step.get("value") is None or value >= step["value"]:
            color = color_of(step.get("color", "text"))
    return color


def mapped(value: float, defaults: dict[str, Any]) -> tuple[str, str] | None:
    """Apply value mappings: return (text, color) when one matches."""
    for mapping in defaults.get("mappings", []):
        if mapping.get("type") == "value":
            for key, result in mapping.get("options", {}).items():
                if float(key) == value:
                    return result.get("text", key), color_of(result.get("color", "text"))
        if mapping.get("type") == "range":
            opts = mapping["options"]
            lo, hi = opts.get("from"), opts.get("to")
            if (lo is None or value >= lo) and (hi is None or value <= hi):
                res = opts.get("result", {})
                return res.get("text", fmt(value, None)), color_of(res.get("color", "text"))
    return None


def points(series: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Return (timestamps, values) of a range-query series, NaN as gaps."""
    xs = [float(t) for t, _ in series.get("values", [])]
    ys = [float(v) for _, v in series.get("values", [])]
    return xs, ys


def last_value(data: list[dict[str, Any]]) -> float | None:
    """Return the last non-NaN value of the first series (Grafana's lastNotNull)."""
    for series in data[:1]:
        _, ys = points(series)
        finite = [y for y in ys if math.isfinite(y)]
        if finite:
            return finite[-1]
    return None


# ---- panels -------------------------------------------------------------------------------

def style_axes(ax: Axes) -> None:
    """Give a plot area Grafana's dark look."""
    ax.set_facecolor(PANEL_BG)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=7, length=0)
    ax.grid(True, color=BORDER, linewidth=0.6)


def draw_timeseries(ax: Axes, panel: dict[str, Any], per_target: list[Any]) -> None:
    """Draw lines per series with a legend below, thresholds dashed."""
    style_axes(ax)
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit")
    n = 0
    for target, data in per_target:
        for series in data:
            xs, ys = points(series)
            label = legend(target.get("legendFormat"), series["metric"])
            dates = [datetime.fromtimestamp(x) for x in xs]
            if "threshold" in label:
                ax.plot(dates, ys, color="#f2495c", linestyle="--", linewidth=1.2, label=label)
                continue
            ax.plot(dates, ys, color=PALETTE[n % len(PALETTE)], linewidth=1.3, label=label)
            n += 1
    if not ax.get_lines():  # like Grafana: no axes, just "No data"
        ax.axis("off")
        ax.text(0.5, 0.5, "No data", color=MUTED, fontsize=14, ha="center",
                transform=ax.transAxes)
        return
    if "min" in defaults or "max" in defaults:
        ax.set_ylim(defaults.get("min"), defaults.get("max"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.xaxis.set_major_locator(plt.MaxNLocator(6))
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        width = panel["gridPos"]["w"]
        longest = max(len(label) for label in labels)
        ncol = max(1, min(len(labels), int(width * 7 / max(longest, 8))))
        shown = 3 * ncol
        if len(handles) > shown:
            handles, labels = handles[:shown - 1], [*labels[:shown - 1]]
            handles.append(Rectangle((0, 0), 1, 1, color=PANEL_BG))
            labels.append(f"+{len(ax.get_lines()) - shown + 1} more")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, -0.1), ncol=ncol,
                  fontsize=6.5, frameon=False, labelcolor=TEXT, handlelength=1.2,
                  columnspacing=1.0)


def draw_stat(ax: Axes, panel: dict[str, Any], per_target: list[Any]) -> None:
    """Draw the big last value, colored by thresholds or mappings, over a faint sparkline."""
    ax.set_facecolor(PANEL_BG)
    ax.axis("off")
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    data = per_target[0][1]
    value = last_value(data)
    if value is None:
        ax.text(0.5, 0.45, "No data", color=MUTED, fontsize=16, ha="center", va="center",
                transform=ax.transAxes)
        return
    hit = mapped(value, defaults)
    text, color = hit or (fmt(value, defaults.get("unit")), threshold_color(value, defaults))
    if defaults.get("unit") == "dateTimeFromNow":
        text = f"{max(0, NOW[0] - value / 1000):.0f} s ago"
    if data and panel.get("options", {}).get("graphMode", "area") == "area":
        xs, ys = points(data[0])
        spark = ax.inset_axes((0, 0, 1, 0.4))
        spark.axis("off")
        spark.fill_between(xs, ys, color=color, alpha=0.15, linewidth=0)
        spark.plot(xs, ys, color=color, alpha=0.5, linewidth=1)
    ax.text(0.5, 0.55, text, color=color, fontsize=20, fontweight="bold", ha="center",
            va="center", transform=ax.transAxes)


def draw_state_timeline(ax: Axes, panel: dict[str, Any], per_target: list[Any]) -> None:
    """Draw one band per series, colored by the value mappings (up green, down red)."""
    ax.set_facecolor(PANEL_BG)
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    target, data = per_target[0]
    rows = sorted(data, key=lambda s: legend(target.get("legendFormat"), s["metric"]))
    for i, series in enumerate(rows):
        xs, ys = points(series)
        for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if not math.isfinite(y):
                continue
            hit = mapped(y, defaults)
            color = hit[1] if hit else threshold_color(y, defaults)
            x2 = xs[j + 1] if j + 1 < len(xs) else x + STEP_S
            ax.add_patch(Rectangle((x, i + 0.1), x2 - x, 0.8, color=color, linewidth=0))
        if xs:
            ax.set_xlim(xs[0], xs[-1] + STEP_S)
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    ax.set_yticklabels([legend(target.get("legendFormat"), s["metric"]) for s in rows])
    ax.tick_params(colors=TEXT, labelsize=7, length=0)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(
        lambda v, _: datetime.fromtimestamp(v).strftime("%H:%M:%S")))
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_heatmap(ax: Axes, panel: dict[str, Any], per_target: list[Any]) -> None:
    """Draw per-bucket counts (cumulative buckets de-accumulated) over time."""
    style_axes(ax)
    ax.grid(False)
    data = per_target[0][1]

    def le(series: dict[str, Any]) -> float:
        return float(series["metric"].get("le", "inf").replace("+Inf", "inf"))

    rows = sorted(data, key=le)
    if not rows:
        return
    xs, _ = points(rows[0])
    matrix = []
    below = [0.0] * len(xs)
    for series in rows:
        _, ys = points(series)
        ys = [y if math.isfinite(y) else 0.0 for y in ys]
        matrix.append([max(0.0, y - b) for y, b in zip(ys, below, strict=False)])
        below = ys
    image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="inferno",
                      interpolation="nearest", extent=(xs[0], xs[-1] + STEP_S, 0, len(rows)))
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    ax.set_yticklabels([f"{le(s):g}" for s in rows], fontsize=6)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(
        lambda v, _: datetime.fromtimestamp(v).strftime("%H:%M:%S")))
    ax.xaxis.set_major_locator(plt.MaxNLocator(6))
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    bar.ax.tick_params(colors=MUTED, labelsize=6)
    bar.outline.set_visible(False)


def draw_table(ax: Axes, panel: dict[str, Any], per_target: list[Any]) -> None:
    """Draw the instant result as a table, organize transformation and unit overrides applied."""
    ax.set_facecolor(PANEL_BG)
    ax.axis("off")
    data = per_target[0][1]
    organize: dict[str, Any] = {}
    for tr in panel.get("transformations", []):
        if tr["id"] == "organize":
            organize = tr["options"]
    exclude = {k for k, v in organize.get("excludeByName", {}).items() if v}
    rename = organize.get("renameByName", {})
    units = {}
    gauges = set()
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in override["properties"]:
            if prop["id"] == "unit":
                units[override["matcher"]["options"]] = prop["value"]
            if prop["id"] == "custom.cellOptions" and prop["value"].get("type") == "gauge":
                gauges.add(override["matcher"]["options"])
    labels = sorted({k for s in data for k in s["metric"]})
    columns = [c for c in ["Time", *labels, "Value"] if c not in exclude]
    headers = [rename.get(c, c) for c in columns]
    rows = []
    data = sorted(data, key=lambda s: sorted(s["metric"].items()))
    for sort in panel.get("options", {}).get("sortBy", [])[:1]:  # Grafana sorts by one column
        if rename.get("Value", "Value") == sort["displayName"]:
            data.sort(key=lambda s: float(s["value"][1]), reverse=sort.get("desc", False))
    for series in data:
        row = []
        for col, header in zip(columns, headers, strict=True):
            if col == "Value":
                value = float(series["value"][1])
                text = fmt(value, units.get(header))
                if header in gauges:
                    text = "█" * round(value * 10) + "░" * (10 - round(value * 10)) + " " + text
                row.append(text)
            else:
                row.append(short(series["metric"].get(col, "")))
        rows.append(row)
    height = panel["gridPos"]["h"]
    max_rows = max(1, int(height * 1.25) - 2)
    more = len(rows) - max_rows
    rows = rows[:max_rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) + 2 for i, h in enumerate(headers)]
    total = sum(widths) or 1
    x = 0.0
    line_h = 1 / (max_rows + 1.5)
    for i, header in enumerate(headers):
        ax.text(x, 1 - line_h * 0.5, header, color="#6e9fff", fontsize=7, fontweight="bold",
                va="center", transform=ax.transAxes, family="DejaVu Sans Mono")
        for j, row in enumerate(rows):
            ax.text(x, 1 - line_h * (j + 1.5), row[i], color=TEXT, fontsize=7, va="center",
                    transform=ax.transAxes, family="DejaVu Sans Mono")
        x += widths[i] / total
    ax.axhline(1 - line_h, color=BORDER, linewidth=0.8)
    if more > 0:
        ax.text(0, 0, f"… {more} more rows", color=MUTED, fontsize=7, transform=ax.transAxes)
    if not rows:
        ax.text(0.5, 0.5, "No data", color=MUTED, fontsize=14, ha="center",
                transform=ax.transAxes)


DRAW = {"timeseries": draw_timeseries, "stat": draw_stat, "state-timeline": draw_state_timeline,
        "heatmap": draw_heatmap, "table": draw_table}
