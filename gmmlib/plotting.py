"""Figures for the course: one palette, soft colours by responsibility, 1-sigma/2-sigma ellipses.

Every figure in the book is drawn with these helpers, so the same component has the same colour
on every page and the ellipses always mean the same thing:

- `PALETTE`: the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), in a fixed order.
- `soft_colors(resp)`: a point's colour is the responsibility-weighted mix of the component
  colours, so a point shared half and half between two components gets a blended colour.
- `covariance_ellipse` / `draw_ellipses`: the contour at n standard deviations of a 2-D
  Gaussian, i.e. the set {x : (x - mu)^T Sigma^{-1} (x - mu) = n^2}.
- `plot_mixture`: the scatter-with-ellipses figure reused by every chapter.
- `plot_log_likelihood`: the log-likelihood trace, one point per EM iteration.
- `use_course_style`: the sizes every figure shares, chosen for the book's text column
  (`COLUMN_WIDTH_IN` at `DPI`, no font under `MIN_FONT_PT`); in a notebook it also makes each
  figure's PNG record its dpi and smallest font size (`figure_png`), which the book's tests read.

matplotlib is imported lazily inside the drawing functions, so ``import gmmlib`` stays light.
"""

from __future__ import annotations

import io

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.text import Text

from gmmlib.em import full_covariances

__all__ = [
    "PALETTE",
    "PALETTE_NAMES",
    "component_colors",
    "soft_colors",
    "ellipse_axes",
    "covariance_ellipse",
    "draw_ellipses",
    "plot_mixture",
    "plot_log_likelihood",
    "use_course_style",
    "figure_png",
    "COLUMN_WIDTH_IN",
    "DPI",
    "MIN_FONT_PT",
]

#: Okabe-Ito palette, ordered so the first colours are the most distinct from each other.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
PALETTE_NAMES = (
    "blue",
    "orange",
    "bluish green",
    "reddish purple",
    "vermillion",
    "sky blue",
    "yellow",
    "black",
)
#: Colour of points and lines that belong to no component (data before any fit).
NEUTRAL = "#7f7f7f"

#: Figures are drawn for the book's text column (672 CSS px): at DPI dots per inch a figure
#: COLUMN_WIDTH_IN wide is shown at its natural size, so 1 pt of text is DPI / 72 px on screen.
COLUMN_WIDTH_IN = 6.7
DPI = 100
#: The smallest font in any figure: 9 pt at 100 dpi is 12.5 px, >= 10 px even if the browser
#: scales a tight-cropped figure down by 20 %.
MIN_FONT_PT = 9.0
#: PNG text keys under which `figure_png` records a figure's dpi and smallest font size.
PNG_KEY_DPI = "gmmlib:dpi"
PNG_KEY_MIN_FONT = "gmmlib:min-font-pt"


def use_course_style() -> None:
    """matplotlib settings shared by every figure of the course (sizes, grid, palette order).

    Inside IPython (the book's pages) every figure is then shown through `figure_png`, so its
    PNG carries its dpi and smallest font size and a test can compute the rendered text size.
    """
    mpl.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "figure.figsize": (COLUMN_WIDTH_IN, 4.2),
            "font.size": 11,
            "axes.titlesize": 11,
            "axes.labelsize": 11,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.fontsize": 10,
            "figure.titlesize": 12,
            "axes.prop_cycle": cycler(color=list(PALETTE)),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to display through
        return
    shell = get_ipython()
    if shell is None:
        return
    # matplotlib loads its backend lazily, and the inline backend registers its own PNG
    # formatter when it loads: load it now, so that ours, registered after, is the one used.
    plt.switch_backend(mpl.get_backend())

    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def _smallest_font_pt(fig) -> float:
    """The smallest font size (pt) of any visible, non-empty text in ``fig`` (after a draw)."""
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return float(min(sizes)) if sizes else float("nan")


def figure_png(fig) -> bytes:
    """``fig`` as PNG bytes (tight bounding box, as the inline backend draws it), recording its
    dpi and smallest font size in the PNG's text chunks (`PNG_KEY_DPI`, `PNG_KEY_MIN_FONT`)."""
    fig.canvas.draw()  # lays out the ticks, so every label exists before we measure
    metadata = {
        PNG_KEY_DPI: f"{fig.dpi:g}",
        PNG_KEY_MIN_FONT: f"{_smallest_font_pt(fig):g}",
    }
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


def _hex_to_rgb(colour: str) -> np.ndarray:
    colour = colour.lstrip("#")
    return np.array([int(colour[i : i + 2], 16) / 255.0 for i in (0, 2, 4)])


def component_colors(n_components: int) -> np.ndarray:
    """RGB colours of the first ``n_components`` components, shape (K, 3), cycling the palette."""
    return np.array([_hex_to_rgb(PALETTE[k % len(PALETTE)]) for k in range(n_components)])


def soft_colors(resp: np.ndarray) -> np.ndarray:
    """Colour of every point as the responsibility-weighted mix of the component colours.

    ``resp`` is (N, K) with rows summing to one (gamma_ik); returns (N, 3) RGB in [0, 1]. A point
    with gamma = (1, 0, 0) gets exactly the first colour; gamma = (0.5, 0.5, 0) gets the
    midpoint of the first two, which is how a point on a boundary shows its blended membership.
    """
    resp = np.asarray(resp, dtype=np.float64)
    if resp.ndim != 2:
        raise ValueError(f"resp must have shape (N, K), got {resp.shape}")
    total = resp.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    return np.clip((resp / total) @ component_colors(resp.shape[1]), 0.0, 1.0)


def ellipse_axes(covariance: np.ndarray, n_std: float = 1.0) -> tuple[float, float, float]:
    """``(width, height, angle_degrees)`` of the n-sigma contour of a 2-D covariance.

    The contour {x : (x - mu)^T Sigma^{-1} (x - mu) = n^2} is an ellipse whose axes point along
    the eigenvectors of Sigma with half-lengths n * sqrt(eigenvalue). A collapsed (singular)
    covariance gives a zero-length axis rather than NaN.
    """
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (2, 2):
        raise ValueError(f"covariance must be 2 x 2 to draw an ellipse, got {cov.shape}")
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (cov + cov.T))
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    major = eigenvectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    width, height = 2.0 * n_std * np.sqrt(eigenvalues[::-1])
    return float(width), float(height), angle


def covariance_ellipse(mean, covariance, n_std: float = 1.0, **kwargs):
    """A matplotlib ``Ellipse`` patch for the n-sigma contour (no fill unless asked)."""
    width, height, angle = ellipse_axes(covariance, n_std)
    kwargs.setdefault("fill", False)
    return Ellipse(xy=np.asarray(mean, float), width=width, height=height, angle=angle, **kwargs)


def draw_ellipses(
    ax,
    means,
    covariances,
    n_stds=(1.0, 2.0),
    colors=None,
    covariance_type: str = "full",
    linewidth: float = 2.0,
):
    """Draw each component's ellipses at ``n_stds`` (solid at 1 sigma, dashed beyond) and mean."""
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    covs = full_covariances(covariances, covariance_type, K, D)
    colors = component_colors(K) if colors is None else colors
    for k in range(K):
        for n_std in n_stds:
            ax.add_patch(
                covariance_ellipse(
                    means[k],
                    covs[k],
                    n_std,
                    edgecolor=colors[k],
                    linewidth=linewidth if n_std <= 1 else 0.8 * linewidth,
                    linestyle="-" if n_std <= 1 else "--",
                    zorder=3,
                )
            )
        ax.plot(
            *means[k],
            marker="X",
            markersize=10,
            markerfacecolor=colors[k],
            markeredgecolor="black",
            markeredgewidth=0.8,
            linestyle="none",
            zorder=4,
        )


def plot_mixture(
    ax,
    X,
    resp=None,
    means=None,
    covariances=None,
    *,
    covariance_type: str = "full",
    n_stds=(1.0, 2.0),
    title: str | None = None,
    point_size: float = 14.0,
    equal_aspect: bool = True,
):
    """Scatter ``X`` coloured by ``resp`` (soft colours) with each component's 1/2-sigma ellipses.

    ``resp`` may be None (grey points), an (N, K) responsibility array, or an (N,) array of hard
    labels (drawn as one-hot responsibilities). ``means``/``covariances`` may be None (no
    ellipses). Returns ``ax`` so calls can be chained.
    """
    X = np.asarray(X, dtype=np.float64)
    if resp is None:
        colours = NEUTRAL
    else:
        resp = np.asarray(resp)
        if resp.ndim == 1:
            labels = resp.astype(int)
            resp = np.eye(int(labels.max()) + 1)[labels]
        colours = soft_colors(resp)
    ax.scatter(X[:, 0], X[:, 1], s=point_size, c=colours, edgecolors="none", alpha=0.9, zorder=2)
    if means is not None and covariances is not None:
        draw_ellipses(ax, means, covariances, n_stds=n_stds, covariance_type=covariance_type)
    if title:
        ax.set_title(title)
    if equal_aspect:
        # Equal units on both axes so circles look round; shared axes can only adjust the box.
        shared = (
            len(ax.get_shared_x_axes().get_siblings(ax)) > 1
            and len(ax.get_shared_y_axes().get_siblings(ax)) > 1
        )
        ax.set_aspect("equal", adjustable="box" if shared else "datalim")
    return ax


def plot_log_likelihood(ax, log_likelihoods, *, per_point: int | None = None, label=None):
    """The log-likelihood trace against EM iteration (iteration 0 = the initial parameters).

    Pass ``per_point=N`` to plot the mean per point instead of the total.
    """
    values = np.asarray(log_likelihoods, dtype=np.float64)
    if per_point:
        values = values / per_point
    ax.plot(np.arange(len(values)), values, marker="o", markersize=3, color=PALETTE[0], label=label)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood per point" if per_point else "log-likelihood ln p(X)")
    ax.grid(alpha=0.3)
    return ax
