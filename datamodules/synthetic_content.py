"""Procedural content families with motion for the synthetic benchmark.

Every family renders a whole clip at once with vectorised numpy: coordinates carry a time axis,
so a clip is a handful of array expressions rather than a per-frame loop. Patterns are built from
analytic functions (sums of random sinusoids, signed distances), so panning and zooming are exact
at sub-pixel offsets and need no resampling.

Families (``CONTENT_FAMILIES``):

- ``texture_pan``: a multi-scale texture of random gratings panned at constant velocity.
- ``shapes``: antialiased discs and boxes bouncing over a colour gradient.
- ``zoom_noise``: a fractal wave field zoomed into (and slowly rotated) about a random centre.
- ``scene``: a composited landscape — sky, sun, parallax hill layers, a moving object.
- ``ripples``: interfering circular waves from drifting sources (held out of training).

``texture_level`` and ``motion_level`` summarise a clean clip in [0, 1]; the quality model uses
them for content masking (texture hides noise, static content hides temporal distortions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FloatArray = np.ndarray


def _grid(frames: int, height: int, width: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return broadcastable ``t (T,1,1)``, ``y (1,H,1)``, ``x (1,1,W)`` in units of the short side."""
    scale = float(min(height, width))
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    y = (np.arange(height, dtype=np.float32) / scale)[None, :, None]
    x = (np.arange(width, dtype=np.float32) / scale)[None, None, :]
    return t, y, x


def _wave_field(
    height: int,
    width: int,
    affine: tuple[FloatArray, FloatArray],
    rng: np.random.Generator,
    waves: int,
    fmin: float,
    fmax: float,
    slope: float,
) -> FloatArray:
    """Sum of random plane waves with power-law amplitudes (a smooth fractal field), ~[-1, 1].

    The field is sampled at ``P = M_t @ (x, y) + o_t`` per frame. Because the phase of each wave is
    affine in ``x`` and ``y``, ``sin(A(x) + B(y)) = sin A cos B + cos A sin B`` turns the whole clip
    into one batched matrix product instead of a sine per pixel and wave.

    Args:
        height: frame height H.
        width: frame width W.
        affine: ``(M, o)`` with ``M`` of shape ``(T, 2, 2)`` and ``o`` of shape ``(T, 2)``.
        rng: random generator.
        waves: number of plane waves K.
        fmin: lowest spatial frequency (cycles per short side).
        fmax: highest spatial frequency.
        slope: amplitude ``∝ f^-slope``.

    Returns:
        float32 ``(T, H, W)``.
    """
    mat, off = affine
    scale = float(min(height, width))
    x = np.arange(width, dtype=np.float64) / scale  # (W,)
    y = np.arange(height, dtype=np.float64) / scale  # (H,)
    freq = np.exp(rng.uniform(np.log(fmin), np.log(fmax), waves))  # (K,)
    angle = rng.uniform(0, np.pi, waves)
    phase = rng.uniform(0, 2 * np.pi, waves)
    amp = freq ** (-slope)
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1) * (2 * np.pi * freq)[:, None]  # (K, 2)
    coef = np.einsum("kc,tcd->tkd", direction, mat)  # (T, K, 2): d(phase)/dx, d(phase)/dy
    const = off @ direction.T + phase  # (T, K)
    a = coef[:, None, :, 0] * x[None, :, None] + const[:, None, :]  # (T, W, K)
    b = coef[:, None, :, 1] * y[None, :, None]  # (T, H, K)
    left = np.concatenate([np.cos(b), np.sin(b)], axis=2) * np.tile(amp, 2)  # (T, H, 2K)
    right = np.concatenate([np.sin(a), np.cos(a)], axis=2).transpose(0, 2, 1)  # (T, 2K, W)
    field = left @ right  # (T, H, W)
    return (field / (np.sqrt(np.sum(amp**2) / 2) * 2.5)).astype(np.float32)


def _translation(frames: int, velocity: tuple[float, float], y_gain: float = 1.0) -> tuple[FloatArray, FloatArray]:
    """Affine ``(M, o)`` for a constant-velocity pan; ``y_gain=0`` collapses the y axis."""
    mat = np.tile(np.diag([1.0, y_gain]), (frames, 1, 1))  # (T, 2, 2)
    t = np.arange(frames, dtype=np.float64)[:, None]
    return mat, t * np.asarray(velocity)[None, :]  # (T, 2)


def _palette(values: FloatArray, rng: np.random.Generator, stops: int = 3) -> FloatArray:
    """Map a field in ~[-1, 1] through a random colour ramp; returns ``(..., 3)`` float in [0, 255]."""
    colours = rng.uniform(20, 235, (stops, 3)).astype(np.float32)
    pos = np.clip((values + 1) / 2, 0, 1) * (stops - 1)
    lo = np.floor(pos).astype(np.int64).clip(0, stops - 2)
    frac = (pos - lo)[..., None]
    return colours[lo] * (1 - frac) + colours[lo + 1] * frac


def _smooth_mask(signed_dist: FloatArray, px: float) -> FloatArray:
    """Antialiased inside-mask from a signed distance (negative inside), one pixel wide edge."""
    return np.clip(0.5 - signed_dist / px, 0, 1)


def render_texture_pan(frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Multi-scale random texture panned at a constant random velocity."""
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.004, 0.03)
    pan = _translation(frames, (speed * np.cos(angle), speed * np.sin(angle)))
    field = _wave_field(height, width, pan, rng, 28, 1.5, 40.0, rng.uniform(0.3, 0.9))
    return _palette(field, rng, stops=int(rng.integers(2, 5)))


def render_shapes(frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Discs and boxes bouncing (by reflection) over a two-colour gradient background."""
    t, y, x = _grid(frames, height, width)
    aspect = width / min(height, width), height / min(height, width)
    c0, c1 = rng.uniform(10, 245, (2, 3)).astype(np.float32)
    ramp = np.clip(x * np.cos(g := rng.uniform(0, 2 * np.pi)) + y * np.sin(g), 0, 1)[..., None]
    img = np.broadcast_to(c0 * (1 - ramp) + c1 * ramp, (frames, height, width, 3)).copy()
    px = 1.0 / min(height, width)
    for _ in range(int(rng.integers(3, 7))):
        r = rng.uniform(0.06, 0.18)
        pos = [_bounce(rng.uniform(r, s - r), rng.uniform(-0.03, 0.03), t, r, s) for s in aspect]
        dx, dy = x - pos[0], y - pos[1]
        if rng.random() < 0.5:
            dist = np.sqrt(dx**2 + dy**2) - r
        else:
            dist = np.maximum(np.abs(dx), np.abs(dy)) - r
        mask = _smooth_mask(dist, px)[..., None]
        img = img * (1 - mask) + rng.uniform(0, 255, 3).astype(np.float32) * mask
    return img


def _bounce(start: float, velocity: float, t: FloatArray, radius: float, extent: float) -> FloatArray:
    """Position of a point moving at ``velocity`` that reflects off ``[radius, extent - radius]``."""
    span = max(extent - 2 * radius, 1e-3)
    phase = np.mod(start - radius + velocity * t, 2 * span)
    return radius + np.where(phase > span, 2 * span - phase, phase)


def render_zoom_noise(frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Fractal wave field zoomed in or out about a random centre with a slow rotation."""
    t = np.arange(frames, dtype=np.float64)
    centre = rng.uniform(0.3, 0.7, 2)
    inv_zoom = np.exp(-rng.choice([-1, 1]) * rng.uniform(0.01, 0.04) * t)  # (T,)
    rot = rng.uniform(-0.02, 0.02) * t
    cos, sin = np.cos(rot) * inv_zoom, np.sin(rot) * inv_zoom
    mat = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (T, 2, 2)
    field = _wave_field(height, width, (mat, -mat @ centre), rng, 32, 2.0, 48.0, rng.uniform(0.4, 1.0))
    return _palette(np.tanh(1.5 * field), rng, stops=int(rng.integers(3, 6)))


def render_scene(frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Landscape composite: sky gradient, sun, three parallax hill layers and a moving object."""
    t, y, x = _grid(frames, height, width)
    h_rel, w_rel = height / min(height, width), width / min(height, width)
    sky_top, sky_bottom = rng.uniform([20, 40, 120], [90, 140, 230]), rng.uniform([150, 160, 170], [250, 230, 240])
    sky_mix = np.clip(y / h_rel, 0, 1)[..., None]
    img = (
        np.broadcast_to(sky_top * (1 - sky_mix) + sky_bottom * sky_mix, (frames, height, width, 3))
        .astype(np.float32)
        .copy()
    )
    px = 1.0 / min(height, width)
    sun = _smooth_mask(np.sqrt((x - rng.uniform(0.2, w_rel - 0.2)) ** 2 + (y - rng.uniform(0.1, 0.3)) ** 2) - 0.08, px)
    img += sun[..., None] * (np.array([255, 240, 180], np.float32) - img)
    pan = rng.uniform(0.004, 0.02) * rng.choice([-1, 1])
    for layer in range(3):
        depth = 1.0 + layer  # nearer layers move faster (parallax)
        ridge_field = _wave_field(1, width, _translation(frames, (pan * depth, 0.0), 0.0), rng, 6, 0.5, 6.0, 0.8)
        ridge = (0.45 + 0.12 * layer) * h_rel + 0.06 * ridge_field  # (T, 1, W)
        detail = _wave_field(height, width, _translation(frames, (pan * depth, 0.0)), rng, 12, 8.0, 40.0, 0.5)
        colour = rng.uniform([20, 60, 10], [120, 160, 90]) * (1.0 - 0.15 * layer)
        mask = _smooth_mask(ridge - y, px)[..., None]
        img = img * (1 - mask) + (colour * (1 + 0.35 * detail[..., None])) * mask
    obj_x = _bounce(rng.uniform(0.2, w_rel - 0.2), rng.uniform(0.01, 0.03), t, 0.1, w_rel)
    box = np.maximum(np.abs(x - obj_x) / 0.1, np.abs(y - 0.85 * h_rel) / 0.05) - 1.0
    mask = _smooth_mask(box * 0.05, px)[..., None]
    return img * (1 - mask) + rng.uniform(0, 255, 3).astype(np.float32) * mask


def render_ripples(frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Interference of circular waves from 2-4 drifting sources, with water-like colours."""
    t, y, x = _grid(frames, height, width)
    field = np.zeros((frames, height, width), dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cx = rng.uniform(0, 1) + rng.uniform(-0.01, 0.01) * t
        cy = rng.uniform(0, 1) + rng.uniform(-0.01, 0.01) * t
        dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        field += np.sin(2 * np.pi * rng.uniform(6, 20) * dist - rng.uniform(0.2, 0.6) * t) / (1 + 3 * dist)
    field = np.tanh(field)
    deep, shallow = rng.uniform([0, 30, 60], [40, 90, 140]), rng.uniform([80, 170, 190], [160, 230, 250])
    mix = ((field + 1) / 2)[..., None]
    caustic = (np.clip(field, 0.75, 1.0) - 0.75)[..., None] * 400
    return deep * (1 - mix) + shallow * mix + caustic


Renderer = Callable[[int, int, int, np.random.Generator], FloatArray]
CONTENT_FAMILIES: dict[str, Renderer] = {
    "texture_pan": render_texture_pan,
    "shapes": render_shapes,
    "zoom_noise": render_zoom_noise,
    "scene": render_scene,
    "ripples": render_ripples,
}
CONTENT_NAMES: dict[str, str] = {
    "texture_pan": "a panning texture",
    "shapes": "moving shapes",
    "zoom_noise": "a zooming noise field",
    "scene": "a landscape scene",
    "ripples": "rippling water",
}


def render_content(family: str, frames: int, height: int, width: int, rng: np.random.Generator) -> FloatArray:
    """Render a clean clip of one content family.

    Args:
        family: one of ``CONTENT_FAMILIES``.
        frames: number of frames T.
        height: frame height H in pixels.
        width: frame width W in pixels.
        rng: generator that fixes every random choice of the clip.

    Returns:
        float32 array ``(T, H, W, 3)`` in [0, 255], RGB.
    """
    if family not in CONTENT_FAMILIES:
        raise ValueError(f"unknown content family {family!r}; allowed: {sorted(CONTENT_FAMILIES)}")
    clip = CONTENT_FAMILIES[family](frames, height, width, rng)  # (T, H, W, 3)
    return np.clip(clip, 0, 255).astype(np.float32)


def _luma(clip: FloatArray) -> FloatArray:
    """BT.601 luma of ``(T, H, W, 3)`` RGB → ``(T, H, W)``."""
    return clip @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def texture_level(clip: FloatArray) -> float:
    """Spatial activity of a clip in [0, 1]: ``1 - exp(-mean|∇Y| / 12)`` over all frames.

    >>> flat = np.full((2, 8, 8, 3), 128.0, dtype=np.float32)
    >>> texture_level(flat)
    0.0
    """
    y = _luma(clip)
    grad = np.abs(np.diff(y, axis=1)).mean() + np.abs(np.diff(y, axis=2)).mean()
    return float(round(1.0 - np.exp(-grad / 12.0), 6))


def motion_level(clip: FloatArray) -> float:
    """Temporal activity of a clip in [0, 1]: ``1 - exp(-mean|Y_t - Y_{t-1}| / 6)``.

    >>> still = np.zeros((3, 4, 4, 3), dtype=np.float32)
    >>> motion_level(still)
    0.0
    """
    y = _luma(clip)
    diff = float(np.abs(np.diff(y, axis=0)).mean()) if len(y) > 1 else 0.0
    return float(round(1.0 - np.exp(-diff / 6.0), 6))
