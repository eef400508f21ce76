"""gmmlib.plotting: the palette, soft colours by responsibility, and the n-sigma ellipses."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gmmlib import plotting  # noqa: E402


def test_palette_is_okabe_ito():
    okabe_ito = {
        "#E69F00",
        "#56B4E9",
        "#009E73",
        "#F0E442",
        "#0072B2",
        "#D55E00",
        "#CC79A7",
        "#000000",
    }
    assert set(plotting.PALETTE) == okabe_ito
    assert len(plotting.PALETTE_NAMES) == len(plotting.PALETTE)


def test_soft_colours_mix_the_component_colours():
    colours = plotting.component_colors(3)
    resp = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    mixed = plotting.soft_colors(resp)
    np.testing.assert_allclose(mixed[0], colours[0])
    np.testing.assert_allclose(mixed[1], colours[2])
    np.testing.assert_allclose(mixed[2], 0.5 * (colours[0] + colours[1]))
    assert mixed.min() >= 0 and mixed.max() <= 1


def test_soft_colours_reject_a_vector():
    with pytest.raises(ValueError, match="shape"):
        plotting.soft_colors(np.array([0.5, 0.5]))


def test_ellipse_axes_follow_the_eigenvectors():
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cov = rotation @ np.diag([4.0, 0.25]) @ rotation.T  # sd 2 along 30°, 0.5 across
    width, height, degrees = plotting.ellipse_axes(cov, n_std=2.0)
    assert width == pytest.approx(2 * 2 * 2.0)
    assert height == pytest.approx(2 * 2 * 0.5)
    assert degrees % 180 == pytest.approx(30.0)


def test_a_collapsed_covariance_gives_a_flat_ellipse_not_nan():
    width, height, _ = plotting.ellipse_axes(np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert np.isfinite(width) and width > 0
    assert height == pytest.approx(0.0, abs=1e-7)


def test_plot_mixture_draws_points_and_two_ellipses_per_component():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    resp = rng.dirichlet(np.ones(2), size=50)
    means = np.array([[0.0, 0.0], [1.0, 1.0]])
    covariances = np.stack([np.eye(2), 0.5 * np.eye(2)])
    fig, ax = plt.subplots()
    plotting.plot_mixture(ax, X, resp, means, covariances, title="t")
    assert len(ax.patches) == 4  # 1σ and 2σ for each component
    assert len(ax.collections) == 1  # the scatter
    np.testing.assert_allclose(
        ax.collections[0].get_facecolors()[:, :3], plotting.soft_colors(resp), atol=1e-12
    )
    plotting.plot_mixture(
        ax, X, np.array([0, 1] * 25), means, np.ones(2), covariance_type="spherical"
    )  # hard labels, round clusters
    plt.close(fig)


def test_plot_log_likelihood_per_point():
    fig, ax = plt.subplots()
    plotting.plot_log_likelihood(ax, [-300.0, -200.0, -150.0], per_point=100)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [-3.0, -2.0, -1.5])
    plt.close(fig)


def test_figure_png_records_dpi_and_smallest_font():
    """The book's legibility test reads these two numbers from every figure's PNG."""
    import io

    from PIL import Image

    plotting.use_course_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("a title")
    ax.text(0.5, 0.5, "small", fontsize=7)
    image = Image.open(io.BytesIO(plotting.figure_png(fig)))
    assert float(image.text[plotting.PNG_KEY_DPI]) == plotting.DPI
    assert float(image.text[plotting.PNG_KEY_MIN_FONT]) == 7.0
    plt.close(fig)


def test_course_style_fonts_are_legible_in_the_column():
    """No font of the course style is under MIN_FONT_PT, and a column-wide figure fits 672 px."""
    import matplotlib as mpl

    plotting.use_course_style()
    keys = [
        "font.size",
        "axes.titlesize",
        "axes.labelsize",
        "xtick.labelsize",
        "ytick.labelsize",
        "legend.fontsize",
    ]
    for key in keys:
        size = mpl.font_manager.FontProperties(size=mpl.rcParams[key]).get_size_in_points()
        assert size >= plotting.MIN_FONT_PT, key
    assert plotting.COLUMN_WIDTH_IN * plotting.DPI <= 672
    assert plotting.MIN_FONT_PT * plotting.DPI / 72 * 0.8 >= 10  # 20 % of scaling to spare
