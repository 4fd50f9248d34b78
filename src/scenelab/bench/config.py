"""The benchmarks' settings (`scenelab bench ...` flags), one dataclass per bench."""

from dataclasses import dataclass

from ..config import AUGMENTS, DATA_SOURCES
from ..fields import option


@dataclass(frozen=True, kw_only=True)
class ConvBenchConfig:
    model: str = option("simplenet", "CNN of the registry to train")
    batch_size: int = option(64, "images per training step")
    sizes: tuple[int, ...] = option((128, 64), "input resolutions in pixels (a table each)")
    num_classes: int = option(100, "classes of the model's head")
    steps: int = option(10, "timed training steps per variant (the median is reported)")
    warmup: int = option(2, "untimed steps first (allocator, oneDNN primitive caches)")
    memory_steps: int = option(10, "training steps in each memory probe (the heap settles)")
    memory_repeats: int = option(3, "fresh processes per variant for peak memory (0: skip)")
    layer_repeats: int = option(5, "forward+backward repeats per conv layer (0: skip layers)")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True, kw_only=True)
class ModelsBenchConfig:
    models: str = option("all", "comma-separated registry names (all: the whole registry)")
    sizes: tuple[int, ...] = option((64, 128), "input resolutions in pixels")
    batch_size: int = option(64, "images per training step")
    num_classes: int = option(100, "classes of the models' heads")
    steps: int = option(5, "timed training steps per model and size (the median is reported)")
    warmup: int = option(2, "untimed steps first (allocator, oneDNN primitive caches)")
    memory_steps: int = option(3, "training steps in each memory probe")
    memory_repeats: int = option(1, "fresh processes per model and size for peak memory (0: skip)")
    out_dir: str = option("runs", "the CSV goes to <out-dir>/bench/")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True, kw_only=True)
class TrainBenchConfig:
    model: str = option("simplenet", "registry model to train")
    variants: str = option(
        "plain,channels_last,bf16,bf16+channels_last,accum2,ema",
        "comma-separated speed switches to time against plain training (also: "
        "compile, compile+bf16; compiling takes a while)",
    )
    batch_size: int = option(64, "images per optimizer step (accum2: two batches of half)")
    image_size: int = option(128, "input resolution in pixels")
    num_classes: int = option(100, "classes of the model's head")
    steps: int = option(8, "optimizer steps per timed pass")
    repeats: int = option(3, "timed passes per variant, taken in turns (the median is reported)")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True, kw_only=True)
class ExplainBenchConfig:
    model: str = option("simplenet", "registry model (randomly initialised)")
    batch_size: int = option(16, "images per call")
    image_size: int = option(64, "input resolution in pixels")
    num_classes: int = option(10, "classes of the model's head")
    samples: int = option(16, "smoothgrad: noisy copies per image")
    steps: int = option(32, "integrated_gradients: path points")
    repeats: int = option(7, "timed calls per method and library, alternating (median)")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True, kw_only=True)
class AttackBenchConfig:
    model: str = option("simplenet", "registry model (randomly initialised)")
    batch_size: int = option(32, "images per attack call")
    image_size: int = option(64, "input resolution in pixels")
    num_classes: int = option(100, "classes of the model's head (MiniPlaces: 100)")
    steps: int = option(10, "PGD iterations")
    eps: float = option(8 / 255, "L-infinity radius in pixels (default: 8/255; L2 cases: 0.5)")
    repeats: int = option(5, "timed calls per attack and library, alternating (median)")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True, kw_only=True)
class DataBenchConfig:
    data: str = option("miniplaces", "data source", choices=DATA_SOURCES)
    data_root: str | None = option(None, "dataset root (miniplaces: holds categories.txt; folder)")
    image_size: int = option(64, "training resolution in pixels")
    batch_size: int = option(64, "images per batch")
    model: str = option("simplenet", "the model trained end to end")
    workers: tuple[int, ...] = option((0, 1, 2), "DataLoader worker counts to measure")
    batches: int = option(20, "timed batches per measurement (after one warm-up batch)")
    augment: str = option("course", "training augmentation preset", choices=AUGMENTS)
    batch_augment: bool = option(True, "augment in batches (--no-batch-augment: per image)")
    repeats: int = option(
        3, "timed passes of model-only and end-to-end training, in turns (the median is reported)"
    )
    cache_images: bool = option(False, "decode the measured images into memory first")
    device: str = option("auto", "device: auto, cpu, cuda, cuda:N or mps")
