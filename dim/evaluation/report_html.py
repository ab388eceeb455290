"""The evaluation's results as one self-contained HTML page: a results table and matplotlib charts (PNG, inline)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

COMPONENTS = ("storage", "retrieval", "requests", "transfer", "early_deletion", "monitoring")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def charts(result: dict) -> dict[str, str]:
    """Title -> base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["series"]
    days = series["slot_days"]
    out: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, cum in series["cumulative_cost_usd"].items():
        ax.plot([(i + 1) * days for i in range(len(cum))], cum, label=name)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("cumulative cost (USD)")
    ax.legend()
    ax.grid(alpha=0.3)
    out["Cumulative cost per policy"] = _png(fig)
    plt.close(fig)

    mix = series["tier_bytes"]
    n = len(mix)
    cols = min(3, n) or 1
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, (name, classes) in zip(axes.ravel(), mix.items()):
        x = [(i + 1) * days for i in range(len(next(iter(classes.values()))))]
        ax.stackplot(x, *[[b / 2**30 for b in v] for v in classes.values()], labels=list(classes))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("day", fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0][0].set_ylabel("replica GiB")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out["Tier mix over time (replica bytes per tier class)"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    reads = series["reads"]
    for name, bad in series["sla_violating_reads"].items():
        frac = [b / r if r else 0.0 for b, r in zip(bad, reads)]
        ax.plot([(i + 1) * days for i in range(len(frac))], frac, label=name)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("SLA-violating read fraction")
    ax.legend()
    ax.grid(alpha=0.3)
    out["SLA-violating reads per day"] = _png(fig)
    plt.close(fig)
    return out


def table(result: dict) -> str:
    head = ["policy", "total USD", *COMPONENTS, "SLA-violating reads", "moves", "GiB moved"]
    rows = []
    for name, r in result["policies"].items():
        b = r["breakdown"]
        cells = [name, f"{r['total_cost_usd']:.4f}", *(f"{b[c]:.4f}" for c in COMPONENTS),
                 f"{r['sla_violating_read_fraction']:.5f}", str(r["moves"]), f"{r['bytes_moved'] / 2**30:.1f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>")


def render(result: dict) -> str:
    meta = {k: result.get(k) for k in ("trace", "time_scale", "size_scale", "catalogue_version", "client_site",
                                       "slot_days", "simulated_days", "objects", "requests", "gap_closed",
                                       "ours_saving_vs_all_hot", "ours_saving_vs_intelligent_tiering",
                                       "wall_seconds")}
    meta_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items())
    imgs = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
                   for t, b in charts(result).items())
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Data-in-Motion evaluation</title>"
            f"<style>{style}</style></head><body><h1>Offline evaluation</h1><table>{meta_rows}</table>"
            f"<h2>Results</h2>{table(result)}{imgs}</body></html>")


def write_html(result: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result))
    return path
