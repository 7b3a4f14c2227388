"""The picture: modelled sign-in time against RTT at a fixed bandwidth, one curve per flow.

The seed's field report is marked: 4-7 minutes at 250 ms / 4 Mbit/s with the vendor's
unoptimised CSP, about 10 s once it was fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .calllog import Workload
from .model import Link, predict

SEED_NAIVE_SECONDS = (4 * 60.0, 7 * 60.0)
SEED_FIXED_SECONDS = 10.0
SEED_RTT_MS = 250.0
DEFAULT_BANDWIDTH = 4e6
RTTS_MS = tuple(range(0, 301, 10))


def curve(work: Workload, bandwidth: float, rtts_ms: Sequence[float] = RTTS_MS) -> list[float]:
    return [predict(work, Link(rtt / 1000, bandwidth)) for rtt in rtts_ms]


def draw(
    workloads: Sequence[Workload],
    stem: Path,
    bandwidth: float = DEFAULT_BANDWIDTH,
    rtts_ms: Sequence[float] = RTTS_MS,
) -> list[Path]:
    """Write STEM.png and STEM.svg; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5))
    for work in workloads:
        axes.plot(rtts_ms, curve(work, bandwidth, rtts_ms), label=f"{work.name} ({work.remote_calls} calls)")
    low, high = SEED_NAIVE_SECONDS
    axes.errorbar(
        [SEED_RTT_MS], [(low + high) / 2], yerr=[[(high - low) / 2], [(high - low) / 2]],
        fmt="o", color="black", capsize=5, label="field report: unoptimised CSP, 4-7 min",
    )  # fmt: skip
    axes.plot([SEED_RTT_MS], [SEED_FIXED_SECONDS], "s", color="black", label="field report: fixed CSP, ~10 s")
    axes.set_yscale("log")
    axes.set_xlabel("round-trip time (ms)")
    axes.set_ylabel("sign-in time (s, log scale)")
    axes.set_title(f"Smart-card sign-in over RDP redirection, {bandwidth / 1e6:g} Mbit/s (model)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, dpi=110)
    plt.close(figure)
    return paths
