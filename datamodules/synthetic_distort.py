"""Distortions, the latent-quality model and rating sources of the synthetic benchmark.

Distortions (``DISTORTIONS``) take a float ``(T, H, W, 3)`` clip in [0, 255] and a severity
``s ∈ [0, 1]``. ``compression`` is not a pixel operation: it is the CRF of the final libx264
encode (``crf_for_severity``), so its artefacts are real codec artefacts. ``flicker`` and
``motion_blur`` are held out of training (``HELD_OUT_DISTORTIONS``).

Latent quality (``latent_quality``). With texture level ``τ`` and motion level ``μ`` of the clean
clip (see ``synthetic_content``), each distortion ``d`` at severity ``s`` costs

    impact_d = w_d · s^γ_d · mask_d(τ, μ),    q = Π_d (1 − impact_d)  ∈ [0, 1]

where the masks encode what a viewer can see: texture hides noise and coding artefacts
(``1 − 0.5τ``), blur and resolution loss show on detail (``0.6 + 0.4τ``), temporal distortions
show on motion (``0.5 + 0.5μ``), flicker and colour shifts are unmasked (``1``).

Rating sources (``SOURCES``) turn ``q`` into a MOS on their own scale — the dataset-specific rating
habits of the paper's motivation: a monotone curve ``g`` (logistic or power), the part of the scale
the raters use, per-rater bias and noise, optional integer (ACR-style) ratings, and their own
severity distribution. ``scale_lo``/``scale_hi`` let readers map MOS linearly to [1, 5]; the curve
and the used range survive that map, which is the calibration bias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FloatArray = np.ndarray


def _blur(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Gaussian blur, sigma 0.4–3.4 px at 128 px (scaled with the short side)."""
    sigma = (0.4 + 3.0 * s) * min(clip.shape[1:3]) / 128
    return ndimage.gaussian_filter(clip, sigma=(0, sigma, sigma, 0))


def _noise(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Sensor noise: signal-dependent (shot) luma noise plus weaker chroma noise, new per frame."""
    sd = 2.0 + 22.0 * s
    shot = np.sqrt(np.clip(clip.mean(axis=3, keepdims=True), 1, 255) / 128.0)  # (T, H, W, 1)
    luma = rng.standard_normal(clip.shape[:3] + (1,), dtype=np.float32) * sd * shot
    chroma = rng.standard_normal(clip.shape, dtype=np.float32) * sd * 0.35
    return clip + luma + chroma


def _resize_matrix(n_in: int, n_out: int) -> FloatArray:
    """``(n_out, n_in)`` linear-resampling matrix; the triangle widens when shrinking (antialias).

    >>> _resize_matrix(4, 2).sum(axis=1)
    array([1., 1.], dtype=float32)
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5  # output sample positions in input pixels
    weights = np.clip(1 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support, 0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _downscale(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Down-scale by 1.3–5x (antialiased) and back up with bilinear interpolation."""
    factor = 1.3 + 3.7 * s
    height, width = clip.shape[1:3]
    small_h, small_w = max(2, round(height / factor)), max(2, round(width / factor))
    rows = _resize_matrix(small_h, height).astype(np.float64) @ _resize_matrix(height, small_h)  # (H, H)
    cols = _resize_matrix(small_w, width).astype(np.float64) @ _resize_matrix(width, small_w)  # (W, W)
    # float64: BLAS sums in a thread-count-dependent order, and float32 rounding differences then
    # flip uint8 pixels between a 1-worker and a pooled run of the same seed
    out = np.einsum("ah,thwc,bw->tabc", rows, clip.astype(np.float64), cols, optimize=True)
    return out.astype(np.float32)


def _stutter(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Frame drops: each frame is replaced by the previous shown one with prob. 0.15–0.65."""
    keep = rng.random(len(clip)) >= 0.15 + 0.5 * s
    keep[0] = True
    if keep[1:].all() and len(clip) > 2:
        keep[int(rng.integers(1, len(clip)))] = False  # at least one visible drop
    shown = np.maximum.accumulate(np.where(keep, np.arange(len(clip)), 0))
    return clip[shown]


def _color(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Exposure shift of ±(0.3–1.5) stops with clipping, a colour cast and a saturation change."""
    stops = rng.choice([-1.0, 1.0]) * (0.3 + 1.2 * s)
    cast = 1.0 + rng.uniform(-0.35, 0.35, 3).astype(np.float32) * s
    grey = clip.mean(axis=3, keepdims=True)
    saturation = 1.0 + rng.choice([-0.8, 0.8]) * s
    out = grey + (clip - grey) * saturation
    return out * cast * np.float32(2.0**stops)


def _flicker(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Per-frame brightness flicker: a random-phase oscillation plus jitter, amplitude 4–34 %."""
    amp = 0.04 + 0.3 * s
    t = np.arange(len(clip))
    wave = np.sin(2 * np.pi * rng.uniform(0.15, 0.45) * t + rng.uniform(0, 2 * np.pi))
    gain = 1.0 + amp * (0.7 * wave + 0.3 * rng.uniform(-1, 1, len(clip)))
    return clip * gain.astype(np.float32)[:, None, None, None]


def _motion_blur(clip: FloatArray, s: float, rng: np.random.Generator) -> FloatArray:
    """Motion blur as a temporal box average over 2–8 frames (moving regions smear, still stay)."""
    window = 2 + int(round(6 * s))
    return ndimage.uniform_filter1d(clip, size=window, axis=0, mode="nearest")


Distortion = Callable[[FloatArray, float, np.random.Generator], FloatArray]
# Canonical application order; compression is the final encode.
DISTORTIONS: dict[str, Distortion | None] = {
    "motion_blur": _motion_blur,
    "blur": _blur,
    "downscale": _downscale,
    "color": _color,
    "noise": _noise,
    "flicker": _flicker,
    "stutter": _stutter,
    "compression": None,
}
HELD_OUT_DISTORTIONS: tuple[str, ...] = ("flicker", "motion_blur")
TRAIN_DISTORTIONS: tuple[str, ...] = tuple(d for d in DISTORTIONS if d not in HELD_OUT_DISTORTIONS)
PRISTINE_CRF = 12


def crf_for_severity(severity: float | None) -> int:
    """libx264 CRF of the final encode: ``18 + 30·s`` for compression, ``PRISTINE_CRF`` otherwise.

    >>> crf_for_severity(0.0), crf_for_severity(1.0), crf_for_severity(None)
    (18, 48, 12)
    """
    return PRISTINE_CRF if severity is None else int(round(18 + 30 * severity))


def apply_distortions(clip: FloatArray, distortions: dict[str, float], rng: np.random.Generator) -> FloatArray:
    """Apply the pixel distortions (all but compression) in canonical order.

    Args:
        clip: float32 ``(T, H, W, 3)`` in [0, 255].
        distortions: name → severity in [0, 1].
        rng: generator for the random parts (noise, drops, casts).

    Returns:
        float32 ``(T, H, W, 3)`` clipped to [0, 255].
    """
    unknown = sorted(set(distortions) - set(DISTORTIONS))
    if unknown:
        raise ValueError(f"unknown distortions {unknown}; allowed: {list(DISTORTIONS)}")
    for name, fn in DISTORTIONS.items():
        if name in distortions and fn is not None:
            clip = fn(clip, float(distortions[name]), rng).astype(np.float32)
    return np.clip(clip, 0, 255)


# name: (weight w_d, exponent γ_d, mask kind)
IMPACT: dict[str, tuple[float, float, str]] = {
    "compression": (0.75, 1.6, "texture_hides"),
    "blur": (0.70, 1.0, "texture_shows"),
    "noise": (0.60, 1.0, "texture_hides"),
    "downscale": (0.60, 1.2, "texture_shows"),
    "stutter": (0.50, 1.0, "motion_shows"),
    "color": (0.50, 1.3, "none"),
    "flicker": (0.50, 1.0, "none"),
    "motion_blur": (0.55, 1.0, "motion_shows"),
}


def _mask(kind: str, texture: float, motion: float) -> float:
    """Visibility factor of a distortion given the clean clip's texture and motion levels."""
    return {
        "texture_hides": 1 - 0.5 * texture,
        "texture_shows": 0.6 + 0.4 * texture,
        "motion_shows": 0.5 + 0.5 * motion,
        "none": 1.0,
    }[kind]


def latent_quality(distortions: dict[str, float], texture: float, motion: float) -> float:
    """Latent quality ``q = Π_d (1 − w_d · s_d^γ_d · mask_d(τ, μ))`` (see the module docstring).

    Args:
        distortions: name → severity in [0, 1].
        texture: texture level τ ∈ [0, 1] of the clean clip.
        motion: motion level μ ∈ [0, 1] of the clean clip.

    Returns:
        q ∈ [0, 1]; 1 means undistorted.

    >>> latent_quality({}, 0.5, 0.5)
    1.0
    >>> round(latent_quality({"noise": 1.0}, texture=0.0, motion=0.0), 3)
    0.4
    >>> latent_quality({"noise": 1.0}, 1.0, 0.0) > latent_quality({"noise": 1.0}, 0.0, 0.0)
    True
    """
    q = 1.0
    for name, severity in distortions.items():
        if name not in IMPACT:
            raise ValueError(f"unknown distortion {name!r}; allowed: {sorted(IMPACT)}")
        weight, gamma, kind = IMPACT[name]
        q *= 1.0 - weight * float(severity) ** gamma * _mask(kind, texture, motion)
    return float(q)


@dataclass(frozen=True)
class RatingSource:
    """One annotation campaign's rating habits (scale, curve, noise, content of its pool).

    Attributes:
        name: source id written in the ``source`` column.
        scale_lo: lowest value of the rating scale.
        scale_hi: highest value of the rating scale.
        curve: ``"logistic"`` (params: slope, centre) or ``"power"`` (params: exponent).
        params: curve parameters.
        used: the fraction ``(lo, hi)`` of the scale the raters actually use.
        raters: number of ratings averaged into one MOS.
        rater_sd: per-rating noise sd, as a fraction of the scale.
        levels: number of discrete rating levels (0 = continuous slider).
        severity_beta: Beta(a, b) of distortion severities in this source's pool.
    """

    name: str
    scale_lo: float
    scale_hi: float
    curve: str
    params: tuple[float, ...]
    used: tuple[float, float]
    raters: int
    rater_sd: float
    levels: int
    severity_beta: tuple[float, float]

    def curve_value(self, q: float | FloatArray) -> FloatArray:
        """Monotone map ``g: [0, 1] → [0, 1]`` of latent quality (before used-range and noise).

        >>> src = SOURCES["slider100"]
        >>> bool(src.curve_value(0.0) == 0.0 and abs(src.curve_value(1.0) - 1.0) < 1e-9)
        True
        """
        q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
        if self.curve == "power":
            return q ** self.params[0]
        if self.curve == "logistic":
            slope, centre = self.params
            f = lambda v: 1.0 / (1.0 + np.exp(-slope * (v - centre)))  # noqa: E731
            return (f(q) - f(0.0)) / (f(1.0) - f(0.0))
        raise ValueError(f"source {self.name!r}: unknown curve {self.curve!r}; allowed: logistic, power")

    def rate(self, q: float, rng: np.random.Generator) -> float:
        """Simulated MOS of a clip with latent quality ``q``: mean of ``raters`` noisy ratings."""
        lo, hi = self.used
        centre = lo + (hi - lo) * float(self.curve_value(q))
        ratings = centre + rng.normal(0.0, self.rater_sd, self.raters)  # fraction of the scale
        ratings = np.clip(ratings, 0.0, 1.0)
        if self.levels > 1:
            ratings = np.round(ratings * (self.levels - 1)) / (self.levels - 1)
        return float(self.scale_lo + (self.scale_hi - self.scale_lo) * ratings.mean())


SOURCES: dict[str, RatingSource] = {
    s.name: s
    for s in (
        # ACR 5-point lab study: S-shaped, uses almost the whole scale.
        RatingSource("acr5", 1.0, 5.0, "logistic", (7.0, 0.55), (0.05, 0.95), 30, 0.10, 5, (1.2, 1.6)),
        # Crowd slider 0-100: lenient (concave), never goes near the bottom, mild pool.
        RatingSource("slider100", 0.0, 100.0, "power", (0.6,), (0.25, 0.92), 25, 0.07, 0, (1.0, 2.2)),
        # Expert 0-10 panel: harsh (convex), stops short of the top, harsher pool.
        RatingSource("expert10", 0.0, 10.0, "power", (2.0,), (0.0, 0.8), 20, 0.07, 11, (1.8, 1.3)),
        # Unseen campaign (ood_calibration): 0-1 scale, steep S squeezed into the middle.
        RatingSource("unit_steep", 0.0, 1.0, "logistic", (9.0, 0.5), (0.2, 0.7), 20, 0.08, 0, (1.4, 1.4)),
    )
}
TRAIN_SOURCES: tuple[str, ...] = ("acr5", "slider100", "expert10")
HELD_OUT_SOURCES: tuple[str, ...] = ("unit_steep",)
