"""Tests on the real MiniPlaces sample (../shared/datasets/miniplaces-sample), when present."""

import pytest
import torch

from scenelab.config import DataConfig
from scenelab.data import build_datasets, build_loader

from conftest import SAMPLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SAMPLE / "categories.txt").is_file(),
        reason=f"real MiniPlaces sample not found at {SAMPLE} (set SCENELAB_MINIPLACES_SAMPLE)",
    ),
]


def test_reads_the_real_sample_unchanged_and_decodes_a_batch():
    cfg = DataConfig(data="miniplaces", data_root=str(SAMPLE), batch_size=16, workers=2)
    train, val, classes = build_datasets(cfg)
    assert len(classes) == 100 and classes[0] == "abbey"
    assert len(val) == 10_000 and len(train) >= 1000
    x, y = next(iter(build_loader(train, cfg, train=True, device=torch.device("cpu"))))
    assert x.shape == (16, 3, 128, 128) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    assert y.dtype == torch.int64 and ((0 <= y) & (y < 100)).all()
    image, label = val[0]
    assert image.shape == (3, 128, 128) and label == 71  # val/00000001.jpg 71
