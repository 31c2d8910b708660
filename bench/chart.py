"""Draws one chart per feature from a bench/run results file (docs/benchmarks.md).

    /usr/bin/python3 bench/chart.py [results.json] [--out docs/bench]

Every feature found in the file's measurements gets <out>/<feature>.png, and beside it
<out>/<feature>.json with the figures it shows (so each chart keeps its data even when a
later run redraws only some): one panel per
case, one bar per peer (the median of the rounds; whiskers span the smallest and largest
round), multiproc in blue, a log scale where the bars span more than LOG_SPAN, the target
lines of the feature underneath, and the machine, date and commit on top. Figures of the
Windows build under Wine share the panel of their case, hatched and marked [Wine].
Needs Debian's python3-matplotlib.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import EngFormatter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_SPAN = 30  # largest/smallest bar above which a panel uses a log scale
WIDTH_IN, LEFT_IN, RIGHT_IN = 11.0, 3.5, 0.4
BAR_IN, PANEL_EXTRA_IN, LINE_IN, GAP_IN = 0.32, 0.7, 0.2, 0.1
COLOURS = {"multiproc": "#1f77b4", "python": "#ff7f0e", "raw": "#8c8c8c", "other": "#2ca02c"}
UNITS = {"us": "µs"}


def kind_of(peer):
    """Peers are named by convention: "multiproc ...", "Python ...", "raw ..."."""
    low = peer.lower()
    if low.startswith("multiproc"):
        return "multiproc"
    if low.startswith("python"):
        return "python"
    if low.startswith("raw") or low.startswith("bare") or "floor" in low:
        return "raw"
    return "other"


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g} M"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def features_of(results):
    order = []
    for m in results["measurements"]:
        f = m.get("feature") or m["benchmark"]
        if f not in order:
            order.append(f)
    return order


def panels_of(results, feature):
    """[(case, unit, better, [measurement, ...])]: native peers first, then Wine's."""
    cases = {}
    for m in results["measurements"]:
        if (m.get("feature") or m["benchmark"]) != feature:
            continue
        c = cases.setdefault(m["case"], {"unit": m["unit"], "better": m["better"], "bars": []})
        c["bars"].append(m)
    out = []
    for name, c in cases.items():
        bars = sorted(c["bars"], key=lambda m: m.get("platform") != "linux")
        out.append((name, c["unit"], c["better"], bars))
    return out


def header_lines(results):
    mach, git = results.get("machine", {}), results.get("git", {})
    commit = (git.get("commit") or "?")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
    load = mach.get("loadavg_start") or [float("nan")]
    first = (f"{mach.get('cpu', '?')}, {mach.get('cores', '?')} cores, {mach.get('memory', '')} · "
             f"{mach.get('os', '')}, Linux {mach.get('kernel', '?')} · load average "
             f"{load[0]:.1f} at the start")
    second = (f"{results.get('date', '?')} · commit {commit} · {mach.get('python', '')} · "
              f"{mach.get('compiler', '')}")
    return first, second


def draw_panel(ax, case, unit, better, bars, rounds):
    labels, values, lo, hi, colours, hatches = [], [], [], [], [], []
    for m in bars:
        wine = m.get("platform") != "linux"
        labels.append(m["peer"] + ("  [Wine]" if wine else ""))
        ok = m.get("median") is not None and not m.get("failed")
        v = m["median"] if ok else 0
        values.append(v)
        s = m.get("spread") or [v, v]
        lo.append(max(0, v - (s[0] if s[0] is not None else v)))
        hi.append(max(0, (s[1] if s[1] is not None else v) - v))
        colours.append(COLOURS[kind_of(m["peer"])])
        hatches.append("//" if wine else "")
    y = list(range(len(bars)))[::-1]
    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_SPAN
    base = min(positive) / 3 if log else 0
    widths = [v if v > 0 else 0 for v in values]
    drawn = ax.barh(y, widths, color=colours, xerr=[lo, hi], capsize=3, height=0.7,
                    error_kw={"elinewidth": 1, "ecolor": "#333333"}, left=None)
    for bar, h, m in zip(drawn, hatches, bars):
        bar.set_hatch(h)
        if h:
            bar.set_alpha(0.55)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left=base, right=max(positive) * 5)
    elif positive:
        ax.set_xlim(0, max(v + e for v, e in zip(values, hi)) * 1.3)
    u = UNITS.get(unit, unit)
    for yy, v, m, e in zip(y, values, bars, hi):
        if v > 0:
            ax.text((v + e) * (1.15 if log else 1) + (0 if log else ax.get_xlim()[1] * 0.01), yy,
                    f"{fmt(v)} {u}", va="center", fontsize=8)
        else:
            ax.text(base if log else 0, yy, "  failed: " + (m.get("failed") or "no value")[:70],
                    va="center", fontsize=8, color="#b00020")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    for tick, m in zip(ax.get_yticklabels(), bars):
        if kind_of(m["peer"]) == "multiproc":
            tick.set_fontweight("bold")
    scale = ", log scale" if log else ""
    ax.set_title(f"{case}", fontsize=10, loc="left")
    ax.set_xlabel(f"{u}, {better} is better{scale} · median of {rounds} rounds, "
                  "whiskers: min..max", fontsize=8)
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))  # 2 M, 500 k: no "1e6" offset
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.set_axisbelow(True)


def draw_feature(results, feature, path):
    panels = panels_of(results, feature)
    targets = [t for t in results.get("targets", []) if (t.get("feature") or t["benchmark"]) == feature]
    failures = [f for f in results.get("failures", []) if f.get("benchmark") == feature]
    wine = any(m.get("platform") != "linux" for _, _, _, bars in panels for m in bars)
    foot = [t["line"] for t in targets]
    for f in failures:
        where = " / ".join(x for x in (f.get("case"), f.get("peer")) if x)
        foot.append(f"failure ({f.get('platform')}){' ' + where if where else ''}: "
                    f"{f['reason']}"[:150])
    notes = ["Blue: multiproc · orange: Python · grey: raw system calls (the floor) · green: "
             "other libraries. Peers ran interleaved round by round in one run on a shared "
             "machine:", "compare bars within this chart, not with other runs."]
    if wine:
        notes.append("[Wine]: the Windows build of the same benchmark, run under "
                     f"{results.get('machine', {}).get('wine') or 'Wine'} on this machine. "
                     "Wine is not Windows: information only, no targets.")
    heights = [len(b) * BAR_IN + PANEL_EXTRA_IN for _, _, _, b in panels]
    top_in = 0.95
    bottom_in = 0.25 + LINE_IN * (len(foot) + len(notes)) + (0.15 if foot else 0)
    total = top_in + sum(heights) + GAP_IN * (len(panels) - 1) + bottom_in
    fig = plt.figure(figsize=(WIDTH_IN, total))
    line1, line2 = header_lines(results)
    fig.text(0.01, 1 - 0.28 / total, f"{feature}: multiproc beside its peers", fontsize=14,
             fontweight="bold", va="center")
    fig.text(0.01, 1 - 0.56 / total, line1, fontsize=8, va="center", color="#444444")
    fig.text(0.01, 1 - 0.74 / total, line2, fontsize=8, va="center", color="#444444")
    y = total - top_in
    for (case, unit, better, bars), h in zip(panels, heights):
        rounds = max((m.get("rounds") or 0) for m in bars)
        ax = fig.add_axes([LEFT_IN / WIDTH_IN, (y - h + 0.55) / total,
                           1 - (LEFT_IN + RIGHT_IN) / WIDTH_IN, (h - 0.8) / total])
        draw_panel(ax, case, unit, better, bars, rounds)
        y -= h + GAP_IN
    y = bottom_in - 0.2
    for line in foot:
        colour = "#1b7f2a" if " PASS" in line else "#b00020"
        fig.text(0.01, y / total, line, fontsize=8, family="monospace", color=colour, va="center")
        y -= LINE_IN
    y -= 0.15 if foot else 0
    for line in notes:
        fig.text(0.01, y / total, line, fontsize=7.5, color="#444444", va="center")
        y -= LINE_IN
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_data(results, feature, path):
    """The chart's own figures: the run's facts and this feature's records."""
    def mine(r):
        return (r.get("feature") or r.get("benchmark")) == feature

    data = {k: results.get(k) for k in ("schema", "date", "command", "rounds", "machine", "git",
                                         "wine_note")}
    data["feature"] = feature
    data["measurements"] = [m for m in results["measurements"] if mine(m)]
    data["targets"] = [t for t in results.get("targets", []) if mine(t)]
    data["failures"] = [f for f in results.get("failures", []) if f.get("benchmark") == feature]
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def main(argv):
    p = argparse.ArgumentParser(prog="bench/chart.py")
    p.add_argument("results", nargs="?",
                   default=os.path.join(ROOT, "build", "bench", "results-latest.json"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    args = p.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    for feature in features_of(results):
        if not any((m.get("feature") or m["benchmark"]) == feature and m.get("platform") == "linux"
                   for m in results["measurements"]):
            print(f"chart: {feature}: no native figures in this run, chart left as it was")
            continue
        path = os.path.join(args.out, f"{feature}.png")
        draw_feature(results, feature, path)
        write_data(results, feature, os.path.join(args.out, f"{feature}.json"))
        print(f"chart: {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
