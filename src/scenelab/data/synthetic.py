"""Procedural synthetic scenes with ground-truth object masks: no download, deterministic by seed.

Ten scene classes drawn from simple shapes over randomised skies, grounds and textures. Each
image is a pure function of (seed, split, index), so image 7 is the same whatever the dataset
size and on every machine. The class-defining objects (boats, trees, cacti, buildings, ...) come
with a pixel mask, which later steps use to score saliency maps. Sky and ground colours are drawn
from palettes shared by the classes (snowy forests, cities at night, a desert on grass), so a
model must look at the objects and the layout, not at one colour.
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

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
SPLITS = {"train": 0, "val": 1, "test": 2}

_GROUNDS = np.array(
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
_SAND, _SNOW = _GROUNDS[4], _GROUNDS[5]


class _Canvas:
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


def _sky(c: _Canvas, horizon: float) -> None:
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


def _outdoor(c: _Canvas, horizon: float, ground: np.ndarray | None = None) -> None:
    """Sky, textured ground below `horizon` and a few distractors (rocks, bushes) on it."""
    _sky(c, horizon)
    rgb = ground if ground is not None else _GROUNDS[c.rng.integers(len(_GROUNDS))]
    dim = 0.35 if c.night else 1.0
    c.paint(c.y >= horizon, c.jitter(rgb) * dim, c.textured(c.u(0.1, 0.45)))
    for _ in range(int(c.rng.integers(0, 4))):
        y, r = c.u(horizon + 0.05, 0.97), c.u(0.015, 0.04)
        if c.rng.random() < 0.5:
            c.paint(c.ellipse(y, c.u(0, 1), r * 0.7, r * 1.3), c.jitter([0.45] * 3) * dim)
        else:
            c.paint(c.disc(y, c.u(0, 1), r), c.jitter([0.25, 0.45, 0.2]) * dim)


def _by_depth(c: _Canvas, n: int, lo: float, hi: float) -> list[float]:
    """`n` base heights in [lo, hi], far (small y) first so near objects occlude far ones."""
    return sorted(c.u(lo, hi) for _ in range(n))


def _coast(c: _Canvas) -> None:
    horizon, shore = c.u(0.3, 0.48), c.u(0.65, 0.82)
    _outdoor(c, horizon, ground=_SAND)
    wave = 0.03 * np.sin(c.x * 2 * np.pi * c.u(1, 3) + c.u(0, 6))
    water = (c.y >= horizon) & (c.y < shore + wave)
    c.paint(water, c.jitter([0.15, 0.40, 0.65]), 1 + 0.12 * np.sin(c.y * c.size * c.u(0.8, 1.6)))
    for y in _by_depth(c, int(c.rng.integers(1, 3)), horizon + 0.08, shore - 0.04):
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


def _forest(c: _Canvas) -> None:
    horizon = c.u(0.35, 0.6)
    _outdoor(c, horizon)
    for y in _by_depth(c, int(c.rng.integers(3, 8)), horizon + 0.03, 0.97):
        cx, h = c.u(0, 1), c.u(0.2, 0.35) * (0.5 + y)
        c.paint(
            c.rect(y - 0.2 * h, y, cx - 0.025, cx + 0.025), c.jitter([0.35, 0.22, 0.1]), obj=True
        )
        crown = c.triangle(y - h, cx, y - 0.15 * h, h * c.u(0.3, 0.45))
        c.paint(
            crown, c.jitter([0.1, 0.35, 0.15]) * (0.35 if c.night else 1), c.textured(0.3), obj=True
        )


def _desert(c: _Canvas) -> None:
    horizon = c.u(0.45, 0.65)
    ground = c.jitter([0.88, 0.62, 0.32]) if c.rng.random() < 0.7 else None
    _outdoor(c, horizon, ground=ground)
    dunes = (c.y > horizon) & (np.sin(c.y * 40 + c.x * c.u(4, 10)) > 0.6)
    c.img = np.where(dunes[..., None], c.img * 0.9, c.img)
    for y in _by_depth(c, int(c.rng.integers(1, 4)), horizon + 0.1, 0.95):
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


def _city(c: _Canvas) -> None:
    c.night = c.rng.random() < 0.3
    horizon = c.u(0.55, 0.85)
    _outdoor(c, horizon, ground=_GROUNDS[3])
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


def _mountain(c: _Canvas) -> None:
    horizon = c.u(0.55, 0.75)
    _outdoor(c, horizon)
    for _ in range(int(c.rng.integers(1, 4))):
        top, cx = c.u(0.1, horizon - 0.2), c.u(0.1, 0.9)
        half = (horizon - top) * c.u(0.8, 1.6)
        peak = c.triangle(top, cx, horizon + 0.01, half)
        rock = c.jitter([0.45, 0.45, 0.5] if c.rng.random() < 0.5 else [0.42, 0.35, 0.3])
        c.paint(peak, rock, c.textured(0.3), obj=True)
        cap = peak & (c.y < top + (horizon - top) * c.u(0.2, 0.35))
        c.paint(cap, c.jitter(_SNOW, 0.04), obj=True)


def _field(c: _Canvas) -> None:
    horizon = c.u(0.3, 0.5)
    _outdoor(c, horizon)
    rows = (c.y > horizon) & (np.sin((c.x - 0.5) / (c.y - horizon + 0.05) * c.u(2, 4)) > 0.5)
    c.img = np.where(rows[..., None], c.img * 0.85, c.img)
    for y in _by_depth(c, int(c.rng.integers(2, 5)), horizon + 0.1, 0.95):
        cx, r = c.u(0.05, 0.95), c.u(0.05, 0.09) * (0.5 + y)
        stack = c.ellipse(y, cx, r * 1.1, r * 1.3) & (c.y <= y)
        stripes = 1 + 0.15 * np.sin(c.y * c.size * 1.5)
        c.paint(stack, c.jitter([0.85, 0.68, 0.3]), stripes, obj=True)


def _snow(c: _Canvas) -> None:
    horizon = c.u(0.35, 0.55)
    _outdoor(c, horizon, ground=_SNOW if c.rng.random() < 0.8 else None)
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


def _lake(c: _Canvas) -> None:
    horizon = c.u(0.3, 0.45)
    _outdoor(c, horizon)
    cy = c.u(horizon + 0.2, 0.75)
    lake = c.ellipse(cy, c.u(0.3, 0.7), c.u(0.08, 0.15), c.u(0.2, 0.35)) & (c.y > horizon + 0.03)
    ripples = 1 + 0.1 * np.sin(c.y * c.size * 1.2) * c.noise(4)
    c.paint(lake, c.jitter([0.2, 0.45, 0.7]), ripples, obj=True)


def _night_sky(c: _Canvas) -> None:
    c.night = True
    horizon = c.u(0.6, 0.85)
    _outdoor(c, horizon)
    cy, cx, r = c.u(0.12, horizon - 0.2), c.u(0.15, 0.85), c.u(0.05, 0.1)
    moon = c.disc(cy, cx, r)
    if c.rng.random() < 0.5:  # crescent
        moon &= ~c.disc(cy - 0.3 * r, cx + 0.5 * r, r)
    c.paint(moon, c.jitter([0.95, 0.93, 0.8], 0.04), obj=True)
    for _ in range(int(c.rng.integers(15, 40))):
        star = c.disc(c.u(0, horizon - 0.03), c.u(0, 1), max(0.008, 0.7 / c.size))
        c.paint(star, c.jitter([0.95, 0.95, 0.85], 0.05), obj=True)


def _interior(c: _Canvas) -> None:
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
    c = _Canvas(size, rng)
    _PAINTERS[label](c)
    img = c.img * c.u(0.85, 1.15) + rng.normal(0, 0.02, c.img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), c.mask


def _check(num_classes: int, size: int) -> None:
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"synthetic scenes have 1 to {len(CLASSES)} classes, got {num_classes}")
    if size < 16:
        raise ValueError(f"synthetic scenes need an image size of at least 16 pixels, got {size}")


def iter_scenes(
    num_images: int, size: int, num_classes: int = 10, seed: int = 0, split: str = "train"
) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """Yield (image (3, S, S) uint8, label, mask (S, S) bool) for i in range(num_images).

    Image i has label i % num_classes and depends only on (seed, split, i).
    """
    _check(num_classes, size)
    for i in range(num_images):
        label = i % num_classes
        image, mask = render_scene(label, size, np.random.default_rng([seed, SPLITS[split], i]))
        yield torch.from_numpy(image).permute(2, 0, 1), label, torch.from_numpy(mask)


def generate(
    num_images: int, size: int, num_classes: int = 10, seed: int = 0, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All of `iter_scenes` stacked: images (N, 3, S, S) uint8, labels (N,), masks (N, S, S)."""
    _check(num_classes, size)
    images = torch.empty(num_images, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(num_images, size, size, dtype=torch.bool)
    labels = torch.arange(num_images) % num_classes
    for i, (image, _, mask) in enumerate(iter_scenes(num_images, size, num_classes, seed, split)):
        images[i], masks[i] = image, mask
    return images, labels, masks


class SyntheticScenes(Dataset):
    """Synthetic scenes generated once and kept in memory (uint8), transformed per access.

    Yields (image, label), or (image, label, mask) with `with_masks=True`; the transform is
    applied to image and mask together, so geometric augmentation keeps them aligned.
    """

    def __init__(
        self,
        num_images: int,
        image_size: int,
        *,
        num_classes: int = 10,
        seed: int = 0,
        split: str = "train",
        transform=None,
        with_masks: bool = False,
    ) -> None:
        self.images, self.labels, self.masks = generate(
            num_images, image_size, num_classes, seed, split
        )
        self.classes = list(CLASSES[:num_classes])
        self.transform, self.with_masks = transform, with_masks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image, label = tv_tensors.Image(self.images[i]), int(self.labels[i])
        if not self.with_masks:
            return (self.transform(image) if self.transform else image), label
        mask = tv_tensors.Mask(self.masks[i])
        if self.transform:
            image, mask = self.transform(image, mask)
        return image, label, mask
