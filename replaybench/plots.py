"""The four figures CL papers print, drawn from a :func:`replaybench.analysis.load_results` frame.

- :func:`plot_average_accuracy`: A_k after each experience, per agent, one panel per stream;
- :func:`plot_forgetting`: each experience's forgetting f_j at the end, per agent and stream;
- :func:`plot_agent_comparison`: final average accuracy (ACC) of every agent on every stream;
- :func:`plot_heatmaps`: R averaged over seeds, one panel per stream × agent.

Every mean is over seeds, with its Student-t interval (:func:`replaybench.metrics.t_interval`,
90% by default); one seed has no interval, so nothing is drawn around it. Runs of one agent with
several option sets (a sweep's grid) are told apart in the legend by the options that differ.
:func:`write_figures` writes all four as PNG and SVG (``replaybench plot``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replaybench.analysis import load_results, runs_frame
from replaybench.errors import ConfigError
from replaybench.metrics import average_accuracy_curve, forgetting_per_experience, t_interval
from replaybench.results import check_writable_folder, draw_heatmap

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FIGURES = ("average_accuracy", "forgetting", "agent_comparison", "R_heatmaps")
"""The file stems :func:`write_figures` writes, in the order of the figures above."""
FORMATS = ("png", "svg", "pdf")
DEFAULT_FORMATS = ("png", "svg")
CONFIDENCE = 0.90


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed, or opened
    import matplotlib.pyplot as plt

    return plt


# --- grouping -----------------------------------------------------------------------------------
def _label_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run, with ``label``: the agent, plus the options that differ where it has several on a stream.

    Options that differ only between streams (a preset per board) keep one label, so that an agent is
    one bar group across streams.
    """
    runs = runs_frame(df)
    labels: dict[tuple[str, str, str], str] = {}
    for (stream, agent), group in runs.groupby(["stream", "agent"], sort=True):
        configs = group.drop_duplicates("config")
        keys = sorted({k for options in configs.options for k in options})
        # an option one set leaves out has the agent's default
        differing = [k for k in keys if len({repr(o.get(k, "default")) for o in configs.options}) > 1]
        for config, options in zip(configs.config, configs.options):
            shown = ", ".join(f"{k}={options.get(k, 'default')}" for k in differing)
            # several sets with the same agent options: a stream option or the device differs, the hash tells
            label = str(agent) if len(configs) == 1 else f"{agent} ({shown or config})"
            labels[(str(stream), str(agent), config)] = label
    return runs.assign(label=[labels[key] for key in zip(runs.stream, runs.agent, runs.config)])


def _groups(runs: pd.DataFrame, stream: str) -> list[tuple[str, np.ndarray]]:
    """``(label, the runs' R stacked: seeds × T × T)`` for each agent configuration on ``stream``."""
    out = []
    for label, group in runs[runs.stream == stream].groupby("label", sort=True):
        shapes = {R.shape for R in group.R}
        if len(shapes) > 1:
            raise ConfigError(f"The runs of {label} on {stream} have R matrices of different sizes: {sorted(shapes)}.")
        out.append((str(label), np.stack(list(group.R))))
    return out


def _colors(runs: pd.DataFrame) -> dict[str, Any]:
    """One colour per label, the same in every figure."""
    plt = _pyplot()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(sorted(runs.label.unique()))}


def _intervals(per_seed: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and t-interval half-width over seeds (axis 0) of each column."""
    pairs = [t_interval(list(column), confidence) for column in per_seed.T]
    return np.array([m for m, _ in pairs]), np.array([h for _, h in pairs])


def _panels(n: int, *, width: float = 4.6, height: float = 3.4) -> tuple[Figure, list[Any]]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _streams(runs: pd.DataFrame) -> list[str]:
    return sorted(runs.stream.unique())


def _seeds_note(confidence: float) -> str:
    return f"mean over seeds, {confidence:.0%} t-interval"


# --- the figures --------------------------------------------------------------------------------
def plot_average_accuracy(df: pd.DataFrame, *, confidence: float = CONFIDENCE) -> Figure:
    """A_k (mean accuracy on the experiences learned so far) against k, one line per agent and a band.

    Args:
        df: A :func:`replaybench.analysis.load_results` frame.
        confidence: Of the t-interval band over seeds.

    Returns:
        The figure: one panel per stream; each agent's line holds the mean A_k over seeds.
    """
    runs = _label_runs(df)
    colors = _colors(runs)
    streams = _streams(runs)
    fig, axes = _panels(len(streams))
    for ax, stream in zip(axes, streams):
        for label, Rs in _groups(runs, stream):
            mean, half = _intervals(np.array([average_accuracy_curve(R) for R in Rs]), confidence)
            k = np.arange(1, len(mean) + 1)
            ax.plot(k, mean, marker="o", markersize=3, color=colors[label], label=f"{label} (n={len(Rs)})")
            ax.fill_between(k, mean - half, mean + half, color=colors[label], alpha=0.2, linewidth=0)
        ax.set_title(stream, fontsize=9)
        ax.set_xlabel("experiences learned k")
        ax.set_ylabel("average accuracy $A_k$")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Average accuracy $A_k$\n({_seeds_note(confidence)})", fontsize=9)
    return fig


def plot_forgetting(df: pd.DataFrame, *, confidence: float = CONFIDENCE) -> Figure:
    """Each experience's final forgetting f_j (:func:`replaybench.metrics.forgetting_per_experience`).

    Args:
        df: A :func:`replaybench.analysis.load_results` frame.
        confidence: Of the t-interval error bars over seeds.

    Returns:
        The figure: one panel per stream, grouped bars (one per agent) at each experience but the
        last, whose mean over agents' seeds is the run's ``forgetting_max``.
    """
    runs = _label_runs(df)
    colors = _colors(runs)
    streams = _streams(runs)
    fig, axes = _panels(len(streams))
    for ax, stream in zip(axes, streams):
        groups = _groups(runs, stream)
        width = 0.8 / max(len(groups), 1)
        for i, (label, Rs) in enumerate(groups):
            if len(Rs[0]) < 2:
                continue
            mean, half = _intervals(np.array([forgetting_per_experience(R) for R in Rs]), confidence)
            # 0-based, as the heatmaps' columns
            x = np.arange(len(mean)) + (i - (len(groups) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=np.nan_to_num(half), capsize=2, color=colors[label], label=label)
        if all(len(Rs[0]) < 2 for _, Rs in groups):
            ax.text(0.5, 0.5, "one experience: nothing to forget", ha="center", transform=ax.transAxes)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(stream, fontsize=9)
        ax.set_xlabel("experience j (the last has no forgetting)")
        ax.set_ylabel("forgetting $f_j$ (best − final)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"Forgetting of each experience at the end\n({_seeds_note(confidence)})", fontsize=9)
    return fig


def plot_agent_comparison(df: pd.DataFrame, *, metric: str = "acc", confidence: float = CONFIDENCE) -> Figure:
    """Grouped bars: ``metric`` (final average accuracy by default) of every agent on every stream.

    Args:
        df: A :func:`replaybench.analysis.load_results` frame.
        metric: A scalar metric of the frame (``acc``, ``forgetting_max``, ``bwt``, ...).
        confidence: Of the t-interval error bars over seeds.

    Returns:
        The figure: streams along x, one bar per agent, the mean over seeds of the metric's values
        in the frame, with its interval.

    Raises:
        ConfigError: the frame has no value of ``metric``.
    """
    values = df[df.metric == metric].dropna(subset=["value"])
    if values.empty:
        known = ", ".join(sorted(df.metric.unique()))
        raise ConfigError(f"No values of the metric {metric!r} to compare; the results hold: {known}.")
    runs = _label_runs(df)
    colors = _colors(runs)
    values = values.assign(label=values.run_id.map(dict(zip(runs.run_id, runs.label))))
    streams = sorted(values.stream.unique())
    labels = sorted(values.label.unique())
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.6, 1.5 + 0.5 * len(labels) * len(streams)), 3.4), layout="constrained")
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        stats = [
            t_interval(list(values[(values.stream == s) & (values.label == label)].value), confidence) for s in streams
        ]
        mean = np.array([m for m, _ in stats])
        half = np.nan_to_num(np.array([h for _, h in stats]))
        x = np.arange(len(streams)) + (i - (len(labels) - 1) / 2) * width
        ax.bar(x, mean, width, yerr=half, capsize=3, color=colors[label], label=label)
    ax.set_xticks(np.arange(len(streams)), streams)
    ax.set_ylabel("final average accuracy (ACC)" if metric == "acc" else metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Agents across streams\n({_seeds_note(confidence)})", fontsize=9)
    return fig


def plot_heatmaps(df: pd.DataFrame) -> Figure:
    """R averaged over seeds, one panel per stream (rows) and agent (columns).

    Args:
        df: A :func:`replaybench.analysis.load_results` frame.

    Returns:
        The figure; a panel's title says how many seeds it averages.
    """
    runs = _label_runs(df)
    streams, labels = _streams(runs), sorted(runs.label.unique())
    size = 1.2 + 0.55 * max(len(R) for R in runs.R)
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(streams),
        len(labels),
        figsize=(size * len(labels), size * len(streams)),
        squeeze=False,
        layout="constrained",
    )
    for row, stream in zip(axes, streams):
        groups = dict(_groups(runs, stream))
        for ax, label in zip(row, labels):
            if label not in groups:
                ax.axis("off")
                continue
            Rs = groups[label]
            draw_heatmap(ax, Rs.mean(axis=0), title=f"{label} on {stream}\n(mean of {len(Rs)} seeds)")
    return fig


# --- writing ------------------------------------------------------------------------------------
def write_figures(
    source: Any,
    out: str | os.PathLike[str],
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    confidence: float = CONFIDENCE,
) -> list[Path]:
    """Draw the four figures of ``source`` and write each in every format; return the paths.

    Args:
        source: A :func:`replaybench.analysis.load_results` frame, or anything it reads.
        out: The folder for the figures (created), named :data:`FIGURES` + the format.
        formats: File formats, any of :data:`FORMATS`.
        confidence: Of the intervals over seeds.

    Raises:
        ConfigError: an unknown format, an unwritable folder, or what :func:`load_results` refuses.
    """
    import pandas as pd

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"The figure formats must be some of {list(FORMATS)}. Got {list(formats)} instead.")
    if not 0 < confidence < 1:
        raise ConfigError(f"The confidence must be a float in the range (0, 1). Got {confidence} instead.")
    folder = check_writable_folder(Path(out))
    df = source if isinstance(source, pd.DataFrame) else load_results(source)
    figures = {
        "average_accuracy": plot_average_accuracy(df, confidence=confidence),
        "forgetting": plot_forgetting(df, confidence=confidence),
        "agent_comparison": plot_agent_comparison(df, confidence=confidence),
        "R_heatmaps": plot_heatmaps(df),
    }
    folder.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    paths = []
    for name, fig in figures.items():
        for fmt in dict.fromkeys(formats):
            path = folder / f"{name}.{fmt}"
            # a fixed hash salt and no date keep an SVG the same for the same data
            metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})
            with plt.rc_context({"svg.hashsalt": "replaybench"}):
                fig.savefig(path, dpi=130, metadata=metadata)
            paths.append(path)
        plt.close(fig)
    return paths
