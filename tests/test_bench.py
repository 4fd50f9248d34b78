import torch

from scenelab.bench import conv as bench
from scenelab.bench.config import ConvBenchConfig

TINY = ConvBenchConfig(
    batch_size=2, sizes=(32,), num_classes=5, steps=2, warmup=1, memory_steps=1, layer_repeats=1
)


def test_conv_inputs_are_every_conv_with_its_input_shape():
    found = bench.conv_inputs(TINY, 32)
    assert [name for name, _, _ in found][0] == "features.0" and len(found) == 7
    assert found[0][2] == (2, 3, 32, 32) and found[-1][2] == (2, 128, 4, 4)


def test_layer_times_time_both_convolutions_with_the_same_weights():
    timings = list(bench.layer_times(TINY, torch.device("cpu"), 32))
    assert len(timings) == 7 and timings[0].shape == "3->64 7x7/2 32x32"
    assert all(min(t.native_ms + t.unfold_ms) > 0 for t in timings)


def test_peak_memory_is_measured_in_a_fresh_process():
    variant = bench.Variant("UnfoldConv2d", "unfold")
    big = ConvBenchConfig(batch_size=16, memory_steps=1, memory_repeats=1)
    assert (
        bench.peak_memory(big, variant, torch.device("cpu"), 64) > 10
    )  # MiB: activations at least


def test_step_table_gives_ratios_to_the_default_onednn_off_and_the_course_layer():
    results = {
        "nn.Conv2d": (100.0, 400.0),
        "nn.Conv2d, oneDNN off": (150.0, 500.0),
        "UnfoldConv2d": (110.0, 420.0),
        "course layer": (220.0, 840.0),
    }
    table = bench.step_table(results, batch_size=64)
    assert "UnfoldConv2d / nn.Conv2d: time 1.10x, memory 1.05x" in table
    assert "UnfoldConv2d / nn.Conv2d, oneDNN off: time 0.73x, memory 0.84x" in table
    assert "course layer / nn.Conv2d: time 2.20x, memory 2.10x" in table
    assert "UnfoldConv2d / course layer: time 0.50x, memory 0.50x" in table
    assert "640.0" in table  # images/s of the default: 64 images in 100 ms


def test_step_time_is_a_positive_median():
    assert bench.step_time(TINY, bench.VARIANTS[2], torch.device("cpu"), 32) > 0


def test_bench_train_times_every_switch_against_plain(capsys):
    import pytest

    from scenelab.bench.train import parse_variants
    from scenelab.cli import main

    flags = "--image-size 16 --batch-size 4 --steps 2 --repeats 1 --num-classes 3".split()
    flags += ["--variants", "bf16+channels_last,accum2,ema"]
    assert main(["bench", "train", *flags]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.endswith("x")]
    assert [r[0] for r in rows] == ["plain", "bf16+channels_last", "accum2", "ema"]
    assert rows[0][-1] == "1.00x" and all(float(r[1]) > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown speed switch fp8"):
        parse_variants("bf16+fp8")


def test_bench_data_compares_the_pipeline_with_the_model(tiny_miniplaces, capsys):
    from scenelab.cli import main

    sizes = "--image-size 24 --batch-size 4 --batches 2 --workers 0,1 --cache-images".split()
    flags = ["--data-root", str(tiny_miniplaces), *sizes]
    assert main(["bench", "data", *flags]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.endswith("x")]
    assert [r.split("  ")[0] for r in rows] == [
        "decode + augment, 0 workers",
        "decode + augment, 1 workers",
        "training step alone (batches in memory)",
        "training end to end (loader)",
    ]
    assert "images cached in memory" in out
