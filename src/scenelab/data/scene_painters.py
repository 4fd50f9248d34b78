"""The ten synthetic scene classes: `CLASSES`, one painter per class in the same order, and
`render_scene`, which draws one scene with its object mask.
"""

import numpy as np

from .scene_canvas import GROUNDS, SAND, SNOW, Canvas, by_depth, outdoor

CLASSES = (
    "coast",
    "forest",
    "desert",
    "city",
    "mountain",
    "field",
    "snow",
    "lake",
    "night_sky",
    "interior",
)


def _coast(c: Canvas) -> None:
    horizon, shore = c.u(0.3, 0.48), c.u(0.65, 0.82)
    outdoor(c, horizon, ground=SAND)
    wave = 0.03 * np.sin(c.x * 2 * np.pi * c.u(1, 3) + c.u(0, 6))
    water = (c.y >= horizon) & (c.y < shore + wave)
    c.paint(water, c.jitter([0.15, 0.40, 0.65]), 1 + 0.12 * np.sin(c.y * c.size * c.u(0.8, 1.6)))
    for y in by_depth(c, int(c.rng.integers(1, 3)), horizon + 0.08, shore - 0.04):
        cx, s = c.u(0.12, 0.88), 0.6 + y  # nearer boats are larger
        c.paint(
            c.rect(y - 0.035 * s, y, cx - 0.08 * s, cx + 0.08 * s),
            c.jitter([0.35, 0.2, 0.1]),
            obj=True,
        )
        c.paint(
            c.triangle(y - 0.2 * s, cx, y - 0.035 * s, 0.07 * s),
            c.jitter([0.95] * 3, 0.05),
            obj=True,
        )


def _forest(c: Canvas) -> None:
    horizon = c.u(0.35, 0.6)
    outdoor(c, horizon)
    for y in by_depth(c, int(c.rng.integers(3, 8)), horizon + 0.03, 0.97):
        cx, h = c.u(0, 1), c.u(0.2, 0.35) * (0.5 + y)
        c.paint(
            c.rect(y - 0.2 * h, y, cx - 0.025, cx + 0.025), c.jitter([0.35, 0.22, 0.1]), obj=True
        )
        crown = c.triangle(y - h, cx, y - 0.15 * h, h * c.u(0.3, 0.45))
        c.paint(
            crown, c.jitter([0.1, 0.35, 0.15]) * (0.35 if c.night else 1), c.textured(0.3), obj=True
        )


def _desert(c: Canvas) -> None:
    horizon = c.u(0.45, 0.65)
    ground = c.jitter([0.88, 0.62, 0.32]) if c.rng.random() < 0.7 else None
    outdoor(c, horizon, ground=ground)
    dunes = (c.y > horizon) & (np.sin(c.y * 40 + c.x * c.u(4, 10)) > 0.6)
    c.img = np.where(dunes[..., None], c.img * 0.9, c.img)
    for y in by_depth(c, int(c.rng.integers(1, 4)), horizon + 0.1, 0.95):
        cx, h = c.u(0.1, 0.9), c.u(0.15, 0.3) * (0.5 + y)
        w, arm = 0.05 * (0.5 + y), c.u(0.35, 0.6)
        body = c.rect(y - h, y, cx - w / 2, cx + w / 2) | c.disc(y - h, cx, w / 2)
        left = c.rect(y - h * arm, y - h * arm + w * 0.8, cx - 2.2 * w, cx) | c.rect(
            y - h * (arm + 0.3), y - h * arm + w * 0.8, cx - 2.2 * w, cx - 1.4 * w
        )
        right = c.rect(y - h * 0.4, y - h * 0.4 + w * 0.8, cx, cx + 2.2 * w) | c.rect(
            y - h * 0.7, y - h * 0.4 + w * 0.8, cx + 1.4 * w, cx + 2.2 * w
        )
        c.paint(body | left | right, c.jitter([0.2, 0.5, 0.25]), c.textured(0.2), obj=True)


def _city(c: Canvas) -> None:
    c.night = c.rng.random() < 0.3
    horizon = c.u(0.55, 0.85)
    outdoor(c, horizon, ground=GROUNDS[3])
    lit = [1.0, 0.85, 0.4] if c.night else [0.55, 0.7, 0.85]
    x = c.u(-0.1, 0.1)
    while x < 1.0:
        w, top = c.u(0.1, 0.22), c.u(0.12, horizon - 0.1)
        building = c.rect(top, horizon + 0.02, x, x + w - 0.01)
        rows, cols = c.u(12, 20), c.u(15, 30)
        windows = building & ((c.y * rows) % 1 < 0.5) & ((c.x * cols) % 1 < 0.5)
        c.paint(building, c.jitter([0.45, 0.42, 0.4], 0.15) * (0.4 if c.night else 1), obj=True)
        c.paint(windows & (c.rng.random(c.y.shape) < 0.7), c.jitter(lit), obj=True)
        x += w + c.u(0, 0.08)


def _mountain(c: Canvas) -> None:
    horizon = c.u(0.55, 0.75)
    outdoor(c, horizon)
    for _ in range(int(c.rng.integers(1, 4))):
        top, cx = c.u(0.1, horizon - 0.2), c.u(0.1, 0.9)
        half = (horizon - top) * c.u(0.8, 1.6)
        peak = c.triangle(top, cx, horizon + 0.01, half)
        rock = c.jitter([0.45, 0.45, 0.5] if c.rng.random() < 0.5 else [0.42, 0.35, 0.3])
        c.paint(peak, rock, c.textured(0.3), obj=True)
        cap = peak & (c.y < top + (horizon - top) * c.u(0.2, 0.35))
        c.paint(cap, c.jitter(SNOW, 0.04), obj=True)


def _field(c: Canvas) -> None:
    horizon = c.u(0.3, 0.5)
    outdoor(c, horizon)
    rows = (c.y > horizon) & (np.sin((c.x - 0.5) / (c.y - horizon + 0.05) * c.u(2, 4)) > 0.5)
    c.img = np.where(rows[..., None], c.img * 0.85, c.img)
    for y in by_depth(c, int(c.rng.integers(2, 5)), horizon + 0.1, 0.95):
        cx, r = c.u(0.05, 0.95), c.u(0.05, 0.09) * (0.5 + y)
        stack = c.ellipse(y, cx, r * 1.1, r * 1.3) & (c.y <= y)
        stripes = 1 + 0.15 * np.sin(c.y * c.size * 1.5)
        c.paint(stack, c.jitter([0.85, 0.68, 0.3]), stripes, obj=True)


def _snow(c: Canvas) -> None:
    horizon = c.u(0.35, 0.55)
    outdoor(c, horizon, ground=SNOW if c.rng.random() < 0.8 else None)
    y, cx, r = c.u(horizon + 0.3, 0.95), c.u(0.2, 0.8), c.u(0.08, 0.12)
    white = c.jitter([0.96, 0.96, 0.99], 0.03)
    for cy, rr in ((y - r, r), (y - 2.6 * r, 0.7 * r), (y - 3.75 * r, 0.48 * r)):
        ball = c.disc(cy, cx, rr)
        shade = 1 - 0.35 * np.sqrt((c.y - cy) ** 2 + (c.x - cx) ** 2) / rr  # a sphere's shading
        c.paint(ball, white, np.clip(shade, 0.6, 1), obj=True)
    head = y - 3.75 * r
    for dx in (-0.18, 0.18):
        c.paint(
            c.disc(head - 0.12 * r, cx + dx * r, max(0.07 * r, 0.6 / c.size)), [0.05] * 3, obj=True
        )
    c.paint(c.rect(head, head + 0.12 * r, cx, cx + 0.6 * r), [0.95, 0.5, 0.1], obj=True)  # nose


def _lake(c: Canvas) -> None:
    horizon = c.u(0.3, 0.45)
    outdoor(c, horizon)
    cy = c.u(horizon + 0.2, 0.75)
    lake = c.ellipse(cy, c.u(0.3, 0.7), c.u(0.08, 0.15), c.u(0.2, 0.35)) & (c.y > horizon + 0.03)
    ripples = 1 + 0.1 * np.sin(c.y * c.size * 1.2) * c.noise(4)
    c.paint(lake, c.jitter([0.2, 0.45, 0.7]), ripples, obj=True)


def _night_sky(c: Canvas) -> None:
    c.night = True
    horizon = c.u(0.6, 0.85)
    outdoor(c, horizon)
    cy, cx, r = c.u(0.12, horizon - 0.2), c.u(0.15, 0.85), c.u(0.05, 0.1)
    moon = c.disc(cy, cx, r)
    if c.rng.random() < 0.5:  # crescent
        moon &= ~c.disc(cy - 0.3 * r, cx + 0.5 * r, r)
    c.paint(moon, c.jitter([0.95, 0.93, 0.8], 0.04), obj=True)
    for _ in range(int(c.rng.integers(15, 40))):
        star = c.disc(c.u(0, horizon - 0.03), c.u(0, 1), max(0.008, 0.7 / c.size))
        c.paint(star, c.jitter([0.95, 0.95, 0.85], 0.05), obj=True)


def _interior(c: Canvas) -> None:
    floor = c.u(0.6, 0.8)
    c.paint(c.y < floor, c.jitter([0.8, 0.75, 0.65], 0.15), c.textured(0.1))
    planks = 1 + 0.15 * np.sign(np.sin(c.x * c.u(10, 20) + c.y * 3))
    c.paint(c.y >= floor, c.jitter([0.55, 0.4, 0.25], 0.1), planks)
    y0, x0 = c.u(0.08, 0.28), c.u(0.05, 0.6)
    h, w = c.u(0.2, 0.3), c.u(0.2, 0.35)
    c.paint(c.rect(y0, y0 + h, x0, x0 + w), c.jitter([0.95] * 3, 0.05), obj=True)  # frame
    glass = c.rect(y0 + 0.02, y0 + h - 0.02, x0 + 0.02, x0 + w - 0.02)
    bars = c.rect(0, 1, x0 + w / 2 - 0.01, x0 + w / 2 + 0.01) | c.rect(
        y0 + h / 2 - 0.01, y0 + h / 2 + 0.01, 0, 1
    )
    c.paint(glass & ~bars, c.jitter([0.5, 0.7, 0.95]), 1 - 0.3 * (c.y - y0), obj=True)
    top, cx, tw = c.u(floor - 0.05, floor + 0.1), c.u(0.25, 0.75), c.u(0.12, 0.25)
    wood = c.jitter([0.35, 0.2, 0.1])
    table = c.rect(top, top + 0.04, cx - tw, cx + tw)
    for lx in (cx - tw + 0.01, cx + tw - 0.04):
        table |= c.rect(top, top + 0.17, lx, lx + 0.03)
    c.paint(table, wood, obj=True)


_PAINTERS = (
    _coast,
    _forest,
    _desert,
    _city,
    _mountain,
    _field,
    _snow,
    _lake,
    _night_sky,
    _interior,
)


def render_scene(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene of class `label`: uint8 image (S, S, 3) and bool object mask (S, S)."""
    c = Canvas(size, rng)
    _PAINTERS[label](c)
    img = c.img * c.u(0.85, 1.15) + rng.normal(0, 0.02, c.img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), c.mask
