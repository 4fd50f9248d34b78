"""Configuration dataclasses, one per concern, built once by the CLI and passed down.

Field names are the CLI flags (`batch_size` -> `--batch-size`); the `help` metadata is the flag's
help text. A run's resolved configuration is `RunConfig`, saved as `config.yaml` and inside every
checkpoint as a plain nested dict (`to_dict`), and read back with `RunConfig.from_dict`.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from .adv_config import ADV_DEFAULTS, ADV_METHODS, ADV_UNITS, AdvConfig  # noqa: F401 (re-exported)
from .fields import option, override_sections, parse_duration

DATA_SOURCES = ("synthetic", "miniplaces", "folder")
OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("course", "course-borders", "light", "none")
BAD_IMAGE = ("error", "skip")
TTA_MEANS = ("logits", "softmax")
CONVS = ("native", "unfold", "course")  # the keys of models.CONV_LAYERS
# --image-size above this is refused: a batch of 64 such images is already 3 GiB as floats, and
# a mistyped size (100000) would ask for terabytes.
MAX_IMAGE_SIZE = 2048
# Images with more pixels than this are refused before decoding (--max-image-pixels): Pillow's
# decompression-bomb threshold, 89.5 MP (9459 x 9459), far above any photo dataset's images.
MAX_IMAGE_PIXELS = 89_478_485
DEVICE, DEVICES = r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    data: str = option("synthetic", "data source", choices=DATA_SOURCES)
    data_root: str | None = option(None, "dataset root (miniplaces: holds categories.txt; folder)")
    image_size: int = option(
        0,
        "training/eval resolution in pixels (0: 64 synthetic, 128 else)",
        low=0,
        high=MAX_IMAGE_SIZE,
    )
    batch_size: int = option(
        64,
        "images per optimisation step (under torchrun: of all processes "
        "together, each loading its share)",
        low=1,
    )
    val_batch_size: int = option(0, "images per evaluation batch (0: --batch-size)", low=0)
    workers: int = option(2, "DataLoader worker processes (0: load in the main process)", low=0)
    limit: int = option(0, "use only the first N validation images (0: all)", low=0)
    max_image_pixels: int = option(
        MAX_IMAGE_PIXELS,
        "refuse images with more pixels than this, from their header, before decoding them "
        "(a bad image: see --on-bad-image; 0: no limit)",
        low=0,
    )
    cache_images: bool = option(
        False,
        "decode every image once into memory (resized as the transforms would): epochs then only "
        "augment (MiniPlaces and folder data; 64 px needs about 470 MB for the sample)",
    )
    on_bad_image: str = option(
        "error",
        "a corrupt or unreadable image: error (stop, naming the file) or skip (leave it out of "
        "its batch; the run lists them in bad_images.txt and summary.json)",
        choices=BAD_IMAGE,
    )
    augment: str = option(
        "course",
        "training augmentation: course (the template's: flip, rotation cropped free of its "
        "black corners, resized crop from 25%%, colour), course-borders (the corners kept), "
        "light (flip and a shifted crop: better for runs of a few epochs) or none",
        choices=AUGMENTS,
    )
    batch_augment: bool = option(
        True,
        "augment the training batch as one warp (per image only the resize and random parameters; "
        "much cheaper on the CPU); --no-batch-augment runs torchvision per image",
    )
    synth_classes: int = option(
        10, "synthetic scenes: number of classes (at most 10)", low=2, high=10
    )
    synth_train: int = option(4000, "synthetic scenes: training images", low=1)
    synth_val: int = option(1000, "synthetic scenes: validation images", low=1)
    synth_seed: int = option(0, "synthetic scenes: generator seed (independent of --seed)")

    @property
    def resolved_image_size(self) -> int:
        if self.image_size:
            return self.image_size
        return 64 if self.data == "synthetic" else 128


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model by name, plus architecture settings (`arch` fields, passed to the model's
    builder); None means the model's own default."""

    model: str = option(
        "simplenet",
        "registry name (see `scenelab models`), tv:NAME (torchvision) or package.module:Name "
        "(your own nn.Module class or factory taking num_classes)",
    )
    conv: str = option(
        "native",
        "convolution of the CNNs: native (nn.Conv2d), unfold (the hand-written one) or course "
        "(the course assignment's layer, its unfolded input saved for backward)",
        choices=CONVS,
    )
    pretrained: bool = option(False, "start from torchvision's ImageNet weights (downloaded once)")
    weights: str | None = option(None, "start from this torchvision state-dict file (offline)")
    freeze_backbone: bool = option(False, "train only the new head of a torchvision model")
    # ViT and multi-scale ViT
    patch_size: int | None = option(None, "ViT: patch size in pixels", arch=True, low=1)
    patch_sizes: tuple[int, ...] | None = option(
        None, "multi-scale ViT: patch size per branch", arch=True
    )
    embed_dim: int | None = option(None, "ViTs: token dimension", arch=True, low=1)
    depth: int | None = option(None, "ViTs: transformer blocks (per branch)", arch=True, low=1)
    num_heads: int | None = option(None, "ViTs: attention heads", arch=True, low=1)
    window_size: int | None = option(
        None,
        "ViTs: attention window in tokens (0: all global)",
        arch=True,
        low=0,
    )
    window_block_indexes: tuple[int, ...] | None = option(
        None, "ViTs: blocks (from 0) with windowed attention; the others attend globally", arch=True
    )
    drop_path_rate: float | None = option(
        None,
        "ViTs: stochastic depth of the last block",
        arch=True,
        low=0,
        high=1,
    )
    head_norm: bool | None = option(None, "ViTs: LayerNorm between pooling and the head", arch=True)
    pos_embed: bool | None = option(None, "ViTs: learned absolute position embedding", arch=True)
    # Bottleneck ResNet
    stage_widths: tuple[int, ...] | None = option(
        None, "resnet_bn, resnet_cpu: output channels per stage", arch=True
    )
    stage_blocks: tuple[int, ...] | None = option(
        None, "resnet_bn, resnet_cpu: residual blocks per stage", arch=True
    )
    final_width: int | None = option(
        None, "resnets: width of the last block (0: none)", arch=True, low=0
    )
    final_block: str | None = option(
        None,
        "resnet_bn: the last block: simplenet (the first report's: 1x1, 3x3, 1x1 convs with "
        "BatchNorm, no shortcut) or bottleneck (residual)",
        arch=True,
    )
    expansion: int | None = option(
        None, "resnets: width / bottleneck width (1: basic)", arch=True, low=1
    )


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    optimizer: str = option("sgd", "optimiser", choices=OPTIMIZERS)
    lr: float = option(0.05, "peak learning rate (after warm-up)", above=0)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = option(
        5e-4,
        "weight decay (not on biases, norm weights and position embeddings: see --decay-all)",
        low=0,
    )
    decay_all: bool = option(
        False,
        "weight decay on every parameter, biases and norm weights included (the course "
        "template's way; off: timm's and nanoGPT's)",
    )
    backbone_lr_scale: float = option(
        1.0, "learning rate of all but the head, as a share of --lr", low=0
    )
    warmup_epochs: float = option(1.0, "linear warm-up length in epochs, then cosine decay", low=0)
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of --lr", low=0, high=1)
    clip_grad: float = option(0.0, "clip the gradient norm to this value (0: off)", low=0)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", low=0, high=1)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = option(10, "training epochs (the length of the learning-rate schedule)", low=1)
    stop_after: int = option(
        0, "stop after N epochs, keeping the schedule of --epochs (0: off)", low=0
    )
    seed: int = option(0, "seed for python, numpy, torch and the data order")
    device: str = option(
        "auto", "device: auto, cpu, cuda, cuda:N or mps", pattern=DEVICE, allowed=DEVICES
    )
    out_dir: str = option("runs", "where run folders are created")
    name: str = option(
        "",
        "run folder name suffix (default: model name)",
        pattern=r"(?!\.\.?$)[^/\\\x00]*",  # one folder name: runs stay inside --out-dir
        allowed="one folder name (no '/', '\\', '.' or '..')",
    )
    accum_steps: int = option(
        1,
        "batches whose gradients are averaged into one optimizer step "
        "(the effective batch is --batch-size x this)",
        low=1,
    )
    ema_decay: float = option(
        0.0,
        "keep an exponential moving average of the weights with this "
        "decay per step (e.g. 0.999) and validate it too (0: off)",
        low=0,
        high=1,
    )
    amp: str = option(
        "off",
        "mixed precision: bf16 autocast (CPU and CUDA) or fp16 with a gradient scaler (CUDA)",
        choices=("off", "bf16", "fp16"),
    )
    channels_last: bool = option(False, "channels-last memory format for the model and its inputs")
    compile: bool = option(
        False, "torch.compile the model (checkpoints stay uncompiled state dicts)"
    )
    sync_bn: bool = option(
        False,
        "under torchrun on CUDA: BatchNorm statistics of the whole "
        "global batch (SyncBatchNorm), not of each process's share",
    )
    checkpoint_every: int = option(
        0,
        "also save last.pt every N optimizer steps, so a killed run "
        "resumes from that step (0: at the end of each epoch only)",
        low=0,
    )
    tta: bool = option(False, "validate on the image and its mirror (flip test-time augmentation)")
    tta_mean: str = option(
        "logits",
        "flip TTA averages the logits (the course template's) or the softmax probabilities",
        choices=TTA_MEANS,
    )
    val_subset: int = option(
        0,
        "validate each epoch on a fixed random N val images, on all after the last (0: all)",
        low=0,
    )
    log_every: int = option(20, "steps between log lines when the output is not a terminal", low=1)
    time_budget: str = option(
        "",
        "fit the whole run into this wall time, e.g. 30m, 90s, 1.5h: epochs planned from the "
        "measured step time as it goes (instead of --epochs), lr annealed at the end; off "
        "(the default) trains --epochs",
    )

    progressive_resize: int = option(
        0,
        "progressive resizing (as FFCV's): train on batches resized to this many pixels at "
        "first, growing to --image-size between --resize-ramp-start and --resize-ramp-end; "
        "validation always at --image-size (0: off)",
        low=0,
    )
    resize_ramp_start: float = option(
        0.25, "progressive resizing: the share of training after which the size starts to grow"
    )
    resize_ramp_end: float = option(
        0.75, "progressive resizing: the share of training by which the size is --image-size"
    )

    def __post_init__(self) -> None:
        if self.time_budget.strip().lower() in ("off", "none"):
            object.__setattr__(self, "time_budget", "")  # a recipe's budget turned off by a flag
        if self.time_budget:
            parse_duration(self.time_budget)  # a bad value fails before any work
        if not 0 <= self.resize_ramp_start <= self.resize_ramp_end <= 1:
            raise ValueError(
                f"--resize-ramp-start {self.resize_ramp_start} and --resize-ramp-end "
                f"{self.resize_ramp_end} are shares of training: 0 <= start <= end <= 1"
            )


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "adv": AdvConfig,
}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)

    def resolve(self) -> "RunConfig":
        """Fill in derived defaults (image size, run name, the adversarial method's attack), so
        the saved config is explicit."""
        size = self.data.resolved_image_size
        if self.train.progressive_resize >= size:
            raise ValueError(
                f"--progressive-resize {self.train.progressive_resize} must be smaller than the "
                f"image size {size} it grows to (or 0 for off)"
            )
        values = {
            "image_size": size,
            "name": self.train.name or self.model.model.rpartition(":")[2],  # tv:NAME, pkg:Name
            "adv_eval_limit": self.adv.eval_limit,
        }
        adv = self.adv
        if adv.adv_train != "none":
            values |= {"adv_steps": adv.steps, "adv_step_size": adv.step_size(adv.adv_eps)}
        return self.override(values)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain values (tuples become lists), as YAML and checkpoints store them."""
        return {
            name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
            for name, section in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build from nested sections ({"optim": {"lr": 0.1}}) and/or flat keys ({"lr": 0.1})."""
        return cls().override(values)

    def override(self, values: dict[str, Any]) -> "RunConfig":
        """A copy with `values` (nested by section or flat field names) replacing the fields."""
        return RunConfig(**override_sections(self, SECTIONS, values))
