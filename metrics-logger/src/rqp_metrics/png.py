"""PNG charts, only when matplotlib is installed (``pip install 'rqp-metrics-logger[png]'``):
the HTML report needs nothing, and matplotlib is too heavy to force on every VM."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from rqp.errors import ConfigError

from .fmt import axis_labeler
from .marks import WorkloadMark
from .series import VmView
from .store import blob_vm_name
from .svg import MARK_END_COLOR, MARK_START_COLOR, PALETTE, axis_range

__all__ = ["matplotlib_available", "render_pngs"]

DPI = 110


def matplotlib_available() -> bool:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("matplotlib") is not None


def render_pngs(
    views: list[VmView], marks: list[WorkloadMark], out_dir: Path, x0: datetime, x1: datetime
) -> list[Path]:
    """One PNG per VM with CPU, network and disk panels on a shared time axis."""
    if not matplotlib_available():
        raise ConfigError(
            "--png needs matplotlib, which is not installed; pip install 'rqp-metrics-logger[png]' or use the HTML report"
        )
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter, MultipleLocator  # noqa: PLC0415

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--png directory {out_dir} cannot be created ({exc.strerror})") from None
    if x1 <= x0:  # one sample: a minute around it, as the HTML charts draw it
        x0, x1 = x0 - timedelta(seconds=30), x1 + timedelta(seconds=30)
    written = []
    for view in views:
        if not view.charts:
            continue
        # squeeze=False: a grid of axes however many charts, so a view of one chart is no special case
        fig, grid = plt.subplots(
            len(view.charts), 1, figsize=(9, 2.4 * max(1, len(view.charts))), sharex=True, squeeze=False
        )
        axes = [row[0] for row in grid]
        for ax, chart in zip(axes, view.charts, strict=True):
            for i, series in enumerate(chart.series):
                if series.points:
                    ts, vs = zip(*series.points, strict=True)
                    ax.plot(ts, vs, label=series.label, color=PALETTE[i % len(PALETTE)], linewidth=1.4)
            for m in marks:
                ax.axvline(m.start, color=MARK_START_COLOR, linestyle="--", linewidth=1, label=f"{m.name} start")
                if m.end is not None:
                    ax.axvline(m.end, color=MARK_END_COLOR, linestyle="--", linewidth=1, label=f"{m.name} finish")
            ax.set_ylabel(chart.unit)
            # the same ticks as the HTML report's: one unit per axis, distinct labels
            top, step = axis_range(chart)
            label = axis_labeler(top, step, chart.unit)
            ax.yaxis.set_major_locator(MultipleLocator(step))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, label=label: label(v)))
            ax.set_title(f"{view.vm} · {chart.title}", fontsize=10, loc="left")
            ax.set_ylim(0, top)
            if any(s.points for s in chart.series) or marks:
                ax.legend(loc="upper right", fontsize=8)
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlim(x0, x1)
        axes[-1].set_xlabel("UTC")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = out_dir / f"{blob_vm_name(view.vm)}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written
