"""What synthetic scenes are drawn with: a canvas (image, object mask, shapes in [0, 1]
coordinates) and the outdoor backdrop most classes start from (sky, textured ground, distractors).
"""

import numpy as np

GROUNDS = np.array(
    [
        [0.30, 0.55, 0.25],  # grass
        [0.60, 0.60, 0.30],  # dry grass
        [0.45, 0.33, 0.20],  # soil
        [0.50, 0.50, 0.50],  # rock
        [0.82, 0.72, 0.50],  # sand
        [0.92, 0.93, 0.97],  # snow
    ],
    dtype=np.float32,
)
SAND, SNOW = GROUNDS[4], GROUNDS[5]


class Canvas:
    """An (S, S, 3) float image in [0, 1], its object mask and shape helpers in [0, 1] coords."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.y, self.x = np.meshgrid(c, c, indexing="ij")  # (S, S) pixel centres
        self.size, self.rng = size, rng
        self.img = np.zeros((size, size, 3), np.float32)
        self.mask = np.zeros((size, size), bool)
        self.night = False

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def jitter(self, rgb: np.ndarray | list[float], amount: float = 0.08) -> np.ndarray:
        return np.clip(np.asarray(rgb, np.float32) + self.rng.uniform(-amount, amount, 3), 0, 1)

    def noise(self, cells: int) -> np.ndarray:
        """Smooth value noise in [0, 1], (S, S), with `cells` random values per side."""
        grid = self.rng.random((cells + 1, cells + 1), dtype=np.float32)
        t, v = self.y * cells, self.x * cells
        i, j = np.minimum(t.astype(int), cells - 1), np.minimum(v.astype(int), cells - 1)
        fy, fx = t - i, v - j
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
        top = grid[i, j] * (1 - fx) + grid[i, j + 1] * fx
        bottom = grid[i + 1, j] * (1 - fx) + grid[i + 1, j + 1] * fx
        return top * (1 - fy) + bottom * fy

    def paint(
        self,
        region: np.ndarray,
        rgb: np.ndarray,
        shade: np.ndarray | float = 1.0,
        obj: bool = False,
    ) -> None:
        """Paint `region` with `rgb` x `shade`; object regions join the mask, others occlude it."""
        layer = np.asarray(rgb, np.float32) * np.asarray(shade, np.float32)[..., None]
        self.img = np.where(region[..., None], layer, self.img)
        self.mask = self.mask | region if obj else self.mask & ~region

    def textured(self, amount: float, cells: int | None = None) -> np.ndarray:
        return 1 + amount * (self.noise(cells or int(self.rng.integers(3, 12))) - 0.5)

    # Shapes: boolean (S, S) regions.
    def disc(self, cy: float, cx: float, r: float) -> np.ndarray:
        return (self.y - cy) ** 2 + (self.x - cx) ** 2 <= r * r

    def ellipse(self, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((self.y - cy) / ry) ** 2 + ((self.x - cx) / rx) ** 2 <= 1

    def rect(self, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
        return (self.y >= y0) & (self.y < y1) & (self.x >= x0) & (self.x < x1)

    def triangle(self, top: float, cx: float, base: float, half_width: float) -> np.ndarray:
        """An upward triangle: apex at (top, cx), base of half-width `half_width` at `base`."""
        frac = (self.y - top) / max(base - top, 1e-6)
        return (frac >= 0) & (frac <= 1) & (np.abs(self.x - cx) <= half_width * frac)


def _sky(c: Canvas, horizon: float) -> None:
    kind = c.rng.choice(["day", "dusk", "overcast"], p=[0.65, 0.2, 0.15])
    top, bottom = {
        "day": ([0.30, 0.50, 0.85], [0.70, 0.80, 0.95]),
        "dusk": ([0.35, 0.30, 0.55], [0.95, 0.60, 0.40]),
        "overcast": ([0.55, 0.57, 0.60], [0.75, 0.76, 0.78]),
    }[str(kind)]
    if c.night:
        top, bottom = [0.02, 0.03, 0.10], [0.10, 0.10, 0.22]
    t = np.clip(c.y / max(horizon, 1e-3), 0, 1)[..., None]
    gradient = c.jitter(top) * (1 - t) + c.jitter(bottom) * t
    clouds = 0 if c.night else c.u(0, 0.35) * (c.noise(4) - 0.5)[..., None]
    sky = c.y < horizon
    c.img = np.where(sky[..., None], np.clip(gradient + clouds, 0, 1), c.img)
    if not c.night and kind != "overcast" and c.rng.random() < 0.4:  # a sun, not an object
        c.paint(
            c.disc(c.u(0.05, horizon * 0.7), c.u(0.1, 0.9), c.u(0.04, 0.08)),
            c.jitter([1.0, 0.92, 0.55], 0.05),
        )


def outdoor(c: Canvas, horizon: float, ground: np.ndarray | None = None) -> None:
    """Sky, textured ground below `horizon` and a few distractors (rocks, bushes) on it."""
    _sky(c, horizon)
    rgb = ground if ground is not None else GROUNDS[c.rng.integers(len(GROUNDS))]
    dim = 0.35 if c.night else 1.0
    c.paint(c.y >= horizon, c.jitter(rgb) * dim, c.textured(c.u(0.1, 0.45)))
    for _ in range(int(c.rng.integers(0, 4))):
        y, r = c.u(horizon + 0.05, 0.97), c.u(0.015, 0.04)
        if c.rng.random() < 0.5:
            c.paint(c.ellipse(y, c.u(0, 1), r * 0.7, r * 1.3), c.jitter([0.45] * 3) * dim)
        else:
            c.paint(c.disc(y, c.u(0, 1), r), c.jitter([0.25, 0.45, 0.2]) * dim)


def by_depth(c: Canvas, n: int, lo: float, hi: float) -> list[float]:
    """`n` base heights in [lo, hi], far (small y) first so near objects occlude far ones."""
    return sorted(c.u(lo, hi) for _ in range(n))
