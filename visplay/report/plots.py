"""The report's figures: SVG text from run-log rows (matplotlib, Agg backend, no display needed).

Every function takes plain rows (dicts as ``RunLog.rows`` returns them) and returns an SVG document (crisp at any
zoom, text kept as text, inlined in the page and written beside it), or None when the rows hold nothing to plot, so
the report shows only what a run actually logged. Output is deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from visplay.keys import phase_rank  # noqa: E402

ROLE_COLOURS = {"questioner": "tab:blue", "reasoner": "tab:orange"}


plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "visplay-report", "font.size": 9})


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inlined in HTML: no XML prolog or doctype


def readable_limits(ax: Any, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Axes a reader can use when a series is one point or flat: matplotlib would centre a single x on a +-0.05
    span with fractional ticks, and a flat y on a range of 1e-7 with an offset (``1e-7+0.4``); here a single x gets
    one unit either side (integer ticks) and a flat y 10% of its size (at least 0.05) either side."""
    if xs and len(set(xs)) == 1:
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ys and max(ys) - min(ys) < 1e-12:
        pad = max(abs(ys[0]) * 0.1, 0.05)
        ax.set_ylim(ys[0] - pad, ys[0] + pad)
        ax.ticklabel_format(axis="y", useOffset=False)


def step_means(totals: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, int, float]]]:
    """{role: [(iteration, step, mean total reward), ...] in step order} from ``rewards`` rows (component total)."""
    sums: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for r in totals:
        sums[(r["role"], int(r["iteration"]), int(r["step"]))].append(float(r["value"]))
    out: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for role, it, step in sorted(sums):
        out[role].append((it, step, sum(sums[(role, it, step)]) / len(sums[(role, it, step)])))
    return dict(out)


def plot_role_steps(ax: Any, role: str, points: list[tuple[int, int, float]], ylabel: str | None = None) -> None:
    """One role's curve on its own step axis (its steps counted across iterations), each iteration's start marked
    and labelled on this axis: the questioner's 8 steps and the reasoner's 24 never share an x."""
    xs = list(range(len(points)))
    ys = [p[2] for p in points]
    ax.plot(xs, ys, marker="o", markersize=2.5, color=ROLE_COLOURS.get(role), label=role)
    for i in range(1, len(points)):
        if points[i][0] != points[i - 1][0]:
            ax.axvline(i - 0.5, color="grey", linestyle="--", linewidth=0.7)
            ax.text(i - 0.4, 1.0, f"i{points[i][0]}", transform=ax.get_xaxis_transform(), fontsize=7, va="top",
                    color="grey")
    ax.set_title(f"{role}: mean reward per training step", fontsize=9)
    ax.set_xlabel(f"{role} step (dashed: next iteration)")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable_limits(ax, xs, ys)


def phase_key(phase: str) -> tuple[int, str]:
    return (phase_rank(phase), phase)


def metric_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[tuple[int, int, float]]]]:
    """{phase: {metric name: [(iteration, step, value), ...] sorted}} from ``metrics`` rows."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["value"] is not None and math.isfinite(r["value"]):
            out[r["phase"]][r["name"]].append((int(r["iteration"]), int(r["step"]), float(r["value"])))
    return {p: {n: sorted(v) for n, v in sorted(out[p].items())} for p in sorted(out, key=phase_key)}


def plot_metric_grid(phase: str, series: Mapping[str, list[tuple[int, int, float]]], ncols: int = 3) -> str | None:
    """One small panel per metric of a phase; x is the step counted across iterations (iteration bounds dashed)."""
    if not series:
        return None
    names = list(series)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = series[name]
        xs = list(range(len(points)))
        ax.plot(xs, [p[2] for p in points], marker="o", markersize=3, linewidth=1.2)
        for i in range(1, len(points)):
            if points[i][0] != points[i - 1][0]:
                ax.axvline(i - 0.5, color="grey", linestyle="--", linewidth=0.7)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        readable_limits(ax, xs, [p[2] for p in points])
        ax.set_xticks(xs[:: max(1, len(xs) // 8)])
        ax.set_xticklabels([f"i{p[0]}s{p[1]}" for p in points][:: max(1, len(xs) // 8)], fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"metrics, phase {phase}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # leave the suptitle its own band
    return _svg(fig)


def kept_range(labels: Sequence[Mapping[str, Any]], filters: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """The lowest and highest confidence among the questions the filters kept (whatever rule they apply: the
    report reads decisions, not a plugin's settings); None when none was kept."""
    kept = {r["question_key"] for r in filters if r.get("keep")}
    values = [float(r["confidence"]) for r in labels if r.get("question_key") in kept and r.get("confidence")
              is not None]
    return (min(values), max(values)) if values else None


def plot_confidence_hist(labels: Sequence[Mapping[str, Any]], kept: Sequence[float] | None) -> str | None:
    """Histogram of silver-label confidence per iteration (all voted questions), with the range the filters kept
    (``kept``: :func:`kept_range`)."""
    by_it: dict[int, list[float]] = defaultdict(list)
    for r in labels:
        if r.get("confidence") is not None:
            by_it[int(r["iteration"])].append(float(r["confidence"]))
    if not by_it:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    bins = [i / 10 for i in range(11)]
    for it in sorted(by_it):
        ax.hist(by_it[it], bins=bins, histtype="step", linewidth=1.6, label=f"iteration {it} (n={len(by_it[it])})")
    if kept:
        for edge in kept:
            ax.axvline(edge, color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("confidence (majority share of the m answers)")
    ax.set_ylabel("questions")
    ax.legend(fontsize=8)
    ax.set_title("silver-label confidence; dotted: the range the filters kept", fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def plot_kept_fraction(filters: Sequence[Mapping[str, Any]]) -> str | None:
    """Share of voted questions kept for the reasoner's training set, per iteration."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in filters:
        counts[int(r["iteration"])][0] += int(bool(r["keep"]))
        counts[int(r["iteration"])][1] += 1
    if not counts:
        return None
    its = sorted(counts)
    fig, ax = plt.subplots(figsize=(5, 3))
    fracs = [counts[i][0] / counts[i][1] for i in its]
    ax.bar([str(i) for i in its], fracs, color="tab:green")
    for x, (f, i) in enumerate(zip(fracs, its)):
        ax.text(x, f, f"{counts[i][0]}/{counts[i][1]}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("kept fraction")
    ax.set_title("questions kept by the filter", fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def plot_kind_shares(metrics: Sequence[Mapping[str, Any]], top: int = 8) -> str | None:
    """The kinds of the questions asked for the reasoner's set, as shares per iteration (stacked bars of the
    ``<prefix>/asked_share/<kind>`` eval metrics a plugin logs, the ``top`` largest kinds and "other"), with the
    iteration's ``kind_shift`` written above its bar: where the questioner drifts, and how far."""
    shares: dict[str, dict[int, float]] = defaultdict(dict)
    shift: dict[int, float] = {}
    for r in metrics:
        if r["phase"] != "eval" or r["value"] is None:
            continue
        name, it = str(r["name"]), int(r["iteration"])
        if "/asked_share/" in name:
            shares[name.split("/asked_share/", 1)[1]][it] = float(r["value"])
        elif name.endswith("/kind_shift"):
            shift[it] = float(r["value"])
    if not shares:
        return None
    its = sorted({i for v in shares.values() for i in v})
    ranked = sorted(shares, key=lambda k: (-sum(shares[k].values()), k))
    shown, rest = ranked[:top], ranked[top:]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bottom = [0.0] * len(its)
    colours = plt.get_cmap("tab10")
    for n, kind in enumerate([*shown, *(["other"] if rest else [])]):
        values = [sum(shares[k].get(i, 0.0) for k in rest) if kind == "other" else shares[kind].get(i, 0.0)
                  for i in its]
        ax.bar([str(i) for i in its], values, bottom=bottom, label=kind,
               color="lightgrey" if kind == "other" else colours(n % 10))
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, i in enumerate(its):
        if i in shift:
            ax.text(x, 1.01, f"shift {shift[i]:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("iteration")
    ax.set_ylabel("share of the reasoner set")
    ax.set_title("kinds of question asked (collapse signals)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _svg(fig)


def plot_rewards(totals: Sequence[Mapping[str, Any]]) -> str | None:
    """Mean total reward per training step, one panel per role, each on its own step axis (``rewards`` rows,
    component ``total``)."""
    means = step_means(totals)
    if not means:
        return None
    fig, axes = plt.subplots(1, len(means), figsize=(4.6 * len(means), 3.2), squeeze=False, sharey=True)
    for ax, role in zip(axes[0], sorted(means)):
        plot_role_steps(ax, role, means[role], "mean total reward" if ax is axes[0][0] else None)
    fig.suptitle("questioner and reasoner reward", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return _svg(fig)


def plot_losses(rows: Sequence[Mapping[str, Any]], title: str) -> str | None:
    """A loss curve per role from rows with ``step`` and ``loss`` (and ``role``), e.g. the cold start's SFT."""
    by_role: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r.get("loss") is not None and math.isfinite(float(r["loss"])):
            by_role[str(r.get("role") or "loss")].append((int(r["step"]), float(r["loss"])))
    if not by_role:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for role in sorted(by_role):
        points = sorted(by_role[role])
        ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.0, label=f"{role} ({len(points)} steps)",
                color=ROLE_COLOURS.get(role))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable_limits(ax, [p[0] for v in by_role.values() for p in v], [p[1] for v in by_role.values() for p in v])
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def plot_named(series: Mapping[str, list[tuple[int, int, float]]], title: str,
               errors: Mapping[str, Mapping[int, float]] | None = None) -> str | None:
    """Several metrics on one axis against iteration (e.g. gold vs silver accuracy); ``errors`` (metric ->
    iteration -> standard error) draws error bars where given."""
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, points in series.items():
        se = (errors or {}).get(name, {})
        ax.errorbar([p[0] + p[1] / 1000 for p in points], [p[2] for p in points],
                    yerr=[se.get(p[0], 0.0) for p in points] if se else None, marker="o", capsize=3, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable_limits(ax, [p[0] for v in series.values() for p in v], [p[2] for v in series.values() for p in v])
    ax.set_xlabel("iteration")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _svg(fig)


def plot_paper_comparison(benchmarks: Sequence[str], titles: Mapping[str, str], rows: Sequence[Any]) -> str | None:
    """Per benchmark: the paper's score (dashed) and ours (solid) against iteration."""
    if not any(r.ours for r in rows):
        return None
    ncols = 4
    nrows = math.ceil(len(benchmarks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.5 * nrows), squeeze=False)
    for ax, bench in zip(axes.flat, benchmarks):
        paper = [(r.iteration, r.paper[bench]) for r in rows if bench in r.paper]
        ours = [(r.iteration, r.ours[bench]) for r in rows if bench in r.ours]
        if paper:
            ax.plot(*zip(*paper), linestyle="--", marker="s", color="grey", label="paper")
        if ours:
            ax.plot(*zip(*ours), marker="o", color="tab:red", label="ours")
        ax.set_title(titles.get(bench, bench), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 100)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(benchmarks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("accuracy (%) by iteration: paper vs ours", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return _svg(fig)


def plot_story(totals: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]],
               gold: Mapping[str, list[tuple[int, int, float]]]) -> str | None:
    """The headline curves side by side: reward per training step, one panel per role on its own step axis
    (iteration boundaries marked and labelled), confidence and kept share per iteration, and gold/silver accuracy
    per iteration when logged."""
    if not totals and not summary:
        return None
    means = step_means(totals)
    roles = sorted(means)
    panels = len(roles) + 1 + bool(gold)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.0), squeeze=False)
    for ax, role in zip(axes[0], roles):
        plot_role_steps(ax, role, means[role])
    ax = axes[0][len(roles)]
    its = [s["iteration"] for s in summary]
    for key, label, colour in (("confidence", "mean confidence", "tab:purple"), ("kept", "kept share", "tab:green"),
                               ("valid", "valid share", "tab:grey")):
        points = [(i, s[key]) for i, s in zip(its, summary) if s.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label, color=colour)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("questions per iteration", fontsize=9)
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable_limits(ax, its, [])
    if ax.lines:
        ax.legend(fontsize=7)
    if gold:
        ax = axes[0][len(roles) + 1]
        for name, points in gold.items():
            ax.plot([p[0] for p in points], [p[2] for p in points], marker="o", label=name)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("gold-checked accuracy", fontsize=9)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        readable_limits(ax, [p[0] for v in gold.values() for p in v], [])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)
