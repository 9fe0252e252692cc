"""The plots of docs/benchmarks.md (docs/img/*.png), drawn by benchmarks/report.py and
benchmarks/fleet_report.py from the benchmarks' results; matplotlib is imported only here, when
a plot is drawn."""

from __future__ import annotations

from pathlib import Path

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def _pyplot():
    """matplotlib's pyplot without a display (Agg), imported when a plot is drawn."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def base_time(run: dict, key: str = "wall") -> float:
    """A baseline run's time for every host of the lab (scaled when only a sample ran)."""
    return run.get(key + "_all", run[key])


def plain_log_axes(ax, x: bool = True) -> None:
    """Log axes labelled 3, 8, 10, 100 rather than 3x10^0."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes = (ax.xaxis, ax.yaxis) if x else (ax.yaxis,)
    for axis in axes:
        axis.set_major_formatter(FuncFormatter(lambda value, _pos: "%g" % value))
        axis.set_minor_formatter(NullFormatter())


def plot_converge(rows: list[dict]) -> None:
    plt = _pyplot()

    sizes = [r["hosts"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, log in zip(axes, (False, True), strict=True):
        ax.plot(sizes, [r["collection"]["first"]["wall"] for r in rows], "o-", color="tab:blue", label="collection, first converge")
        ax.plot(sizes, [r["collection"]["rerun"]["wall"] for r in rows], "s-", color="tab:green", label="collection, no-change re-run")
        if all("baseline" in r for r in rows):
            for key, style, color, label in (("first", "o--", "tab:red", "baseline (ip/bridge commands), first"),
                                             ("rerun", "s--", "tab:orange", "baseline, guarded re-run")):
                ax.plot(sizes, [base_time(r["baseline"][key]) for r in rows], style, color=color, label=label)
                est = [(r["hosts"], base_time(r["baseline"][key])) for r in rows if r["baseline"][key].get("hosts_run", r["hosts"]) < r["hosts"]]
                if est:
                    ax.plot([n for n, _ in est], [t for _, t in est], "o", mfc="white", color=color, ms=9)
        before = [r for r in rows if "before" in r]
        if before:
            ax.plot([r["hosts"] for r in before], [r["before"]["first"]["wall"] for r in before], "o:", color="lightsteelblue",
                    label="collection first converge before overlay_plan (%s)" % before[0]["before"]["commit"])
            ax.plot([r["hosts"] for r in before], [r["before"]["rerun"]["wall"] for r in before], "s:", color="grey",
                    label="collection re-run before overlay_plan (%s)" % before[0]["before"]["commit"])
        ax.set_xlabel("hosts (one VM each)")
        ax.set_ylabel("wall time (s)")
        ax.set_xticks(sizes)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(sizes)
            plain_log_axes(ax)
            ax.set_title("log-log (slope = growth exponent k)")
        else:
            ax.set_title("static mode converge, linear axes")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.text(0.5, 0.005, "hollow markers: baseline estimated from a sample of hosts (see docs/benchmarks.md)", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / "converge_scaling.png", dpi=110)
    plt.close(fig)


def plot_dataplane(modes: list[dict], dove: list[dict] | None) -> None:
    plt = _pyplot()

    IMG.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [m["mode"] for m in modes]
    xs = range(len(modes))
    ax.bar([x - 0.2 for x in xs], [m["underlay_gbps"] for m in modes], 0.4, label="underlay (host to host)", color="tab:grey")
    bars = ax.bar([x + 0.2 for x in xs], [m["overlay_gbps"] for m in modes], 0.4, label="overlay (VM to VM)", color="tab:blue")
    for bar, m in zip(bars, modes, strict=True):
        ax.annotate("%.0f%%" % (100 * m["ratio"]), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel("iperf3 TCP, Gbit/s")
    ax.set_title("TCP throughput, overlay vs underlay (same machine, 2 CPUs)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "dataplane.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, p50, p99 = [], [], []
    for m in modes:
        labels.append("dove\n(lab)" if m["mode"] == "dove" else m["mode"])
        p50.append(m["first_ping"]["p50_ms"])
        p99.append(m["first_ping"]["p99_ms"])
    for d in dove or []:
        labels.append("DOVE\n%d VMs/host" % d["endpoints_per_host"])
        p50.append(d["first_ping_ms_p50"])
        p99.append(d["first_ping_ms_p99"])
    xs = range(len(labels))
    ax.bar(xs, p50, 0.6, color=["tab:green" if label == "static" else "tab:purple" if "ove" in label else "tab:blue" for label in labels],
           label="p50")
    ax.scatter(xs, p99, marker="_", s=400, color="black", label="p99", zorder=3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_ylabel("first ping (ARP cache flushed), ms")
    ax.set_yscale("log")
    plain_log_axes(ax, x=False)
    ax.set_title("Time to the first echo reply")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "first_ping.png", dpi=110)
    plt.close(fig)


def plot_fleet(per: list, plot: Path) -> None:
    """Fleet scale: (hosts, ms elapsed, ms CPU, KB peak RSS) per inventory host against N."""
    plt = _pyplot()

    fig, left = plt.subplots(figsize=(7, 4))
    sizes = [p[0] for p in per]
    left.plot(sizes, [p[1] for p in per], "o-", label="elapsed per host (ms)")
    left.plot(sizes, [p[2] for p in per], "s-", label="CPU per host (ms)")
    left.set_xscale("log")
    left.set_xlabel("hosts in the inventory (10 VMs each)")
    left.set_ylabel("ms per inventory host")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(sizes, [p[3] for p in per], "^--", color="tab:green", label="peak RSS per host (KB)")
    right.set_ylabel("KB per inventory host")
    right.set_ylim(bottom=0)
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="upper right", fontsize=8)
    left.set_title("Converging 3 lab hosts from an N-host inventory: cost per inventory host")
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100)
    plt.close(fig)
