import json
import re
import subprocess
import sys
import time

import pytest
import torch
import yaml

from scenelab.checkpoint import load_checkpoint
from scenelab.cli import main
from scenelab.config import RunConfig
from scenelab.tracking import read_rows

from conftest import TINY_TRAIN

SUMMARY_KEYS = {
    "model",
    "conv",
    "data",
    "image_size",
    "epochs",
    "params",
    "best_val_acc1",
    "final_val_acc1",
    "final_val_acc5",
    "train_seconds",
    "images_per_second",
    "peak_memory_mb",
}


def _train(tmp_path, *extra):
    assert main(["train", *TINY_TRAIN, "--out-dir", str(tmp_path), *extra]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run


def test_train_creates_the_whole_run_folder(tmp_path, capsys):
    run = _train(tmp_path, "--name", "tiny")
    assert run.name.endswith("-tiny")
    for name in (
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys() and summary["epochs"] == 2
    assert summary["image_size"] == 32 and summary["params"] == 315_267
    rows = read_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {
        "train_loss",
        "train_acc1",
        "train_acc5",
        "val_loss",
        "val_acc1",
        "val_acc5",
        "lr",
        "epoch_seconds",
        "images_per_second",
        "peak_memory_mb",
    } <= rows[0].keys()
    out = capsys.readouterr().out
    assert "epoch 1/2 1/3 loss" in out  # a log line per step (not a terminal)
    assert f"Results: {run}" in out and "tensorboard --logdir" in out


def test_saved_config_is_resolved_and_reloads(tmp_path):
    run = _train(tmp_path)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    cfg = RunConfig.from_dict(saved)
    assert cfg.data.image_size == 32 and cfg.train.name == "simplenet"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"] == cfg.to_dict()


def test_tensorboard_gets_the_agreed_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(tmp_path, "--epochs", "4")  # 12 steps: train/lr is logged every 10
    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/acc1", "val/acc1", "val/acc5"} <= set(tags)


def test_tensorboard_gets_every_step_s_loss_whatever_the_console_interval(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def step_losses(run):
        events = EventAccumulator(str(run / "tb")).Reload()
        return [(e.step, e.value) for e in events.Scalars("train/step_loss")]

    every = step_losses(_train(tmp_path / "every"))  # --log-every 1
    sparse = step_losses(_train(tmp_path / "sparse", "--log-every", "4"))  # 6 steps
    assert [step for step, _ in sparse] == list(range(1, 7)) and sparse == every


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = _train(tmp_path / "full")
    part = _train(tmp_path / "part", "--stop-after", "1")
    assert [r["epoch"] for r in read_rows(part / "metrics.jsonl")] == [1]
    last = part / "checkpoints" / "last.pt"
    first_wall = load_checkpoint(last)["totals"]["wall_seconds"]
    started = time.perf_counter()
    assert main(["train", "--resume", str(last), "--workers", "0"]) == 0
    second_call = time.perf_counter() - started
    # The wall time goes on from the first process's, and counts the second's (not the pause)
    summary = json.loads((part / "summary.json").read_text())
    assert first_wall < summary["wall_seconds"] <= first_wall + second_call
    assert summary["wall_seconds"] > summary["train_seconds"]  # validation counts too
    expected, resumed = read_rows(full / "metrics.jsonl"), read_rows(part / "metrics.jsonl")
    assert [r["epoch"] for r in resumed] == [1, 2]
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "lr"):
        assert resumed[1][key] == pytest.approx(expected[1][key], rel=1e-6, abs=1e-9), key
    a = load_checkpoint(full / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(last)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_refuses_flags_that_change_the_run(tmp_path, capsys):
    run = _train(tmp_path, "--stop-after", "1")
    assert main(["train", "--resume", str(run / "checkpoints/last.pt"), "--lr", "0.3"]) == 2
    assert "drop --lr" in capsys.readouterr().err


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("optim:\n  lr: 1.0e-2\n  optimizer: adamw\nepochs: 1\nname: fromfile\n")
    run = _train(tmp_path / "runs", "--config", str(recipe), "--lr", "0.02")
    cfg = RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.optim.lr == 0.02 and cfg.optim.optimizer == "adamw"
    assert cfg.train.epochs == 2  # TINY_TRAIN's --epochs beats the file too
    assert run.name.endswith("-fromfile")


def test_bad_config_values_are_clear_errors(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: fast\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert "config key 'lr': expected float, got 'fast'" in capsys.readouterr().err
    recipe.write_text("learning_rate: 0.1\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert "unknown configuration keys: learning_rate" in capsys.readouterr().err
    recipe.write_text("model: vit\nwindow_block_indexes: [1, x]\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert "'window_block_indexes': expected integers such as 1,3, got [1, 'x']" in (
        capsys.readouterr().err
    )


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", "miniplaces", "--out-dir", str(tmp_path)]) == 2
    assert "--data miniplaces needs --data-root" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no half-made run folder


def test_eval_writes_metrics_per_class_and_confusion(tmp_path, capsys):
    run = _train(tmp_path)
    ckpt = run / "checkpoints" / "best.pt"
    assert main(["eval", "--checkpoint", str(ckpt), "--tta", "--workers", "0"]) == 0
    out = run / "eval" / "best-val-tta"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 24 and metrics["tta"] is True and 0 <= metrics["acc1"] <= 100
    assert (out / "per_class.csv").read_text().splitlines()[0] == "class,images,acc1"
    assert len((out / "confusion.csv").read_text().splitlines()) == 4
    assert (out / "confusion.png").stat().st_size > 1000
    assert main(["eval", "--checkpoint", str(ckpt), "--tta", "--workers", "0"]) == 0
    assert (run / "eval" / "best-val-tta-1").is_dir()  # never overwrites
    assert f"Results: {out}" in capsys.readouterr().out


def test_eval_of_weights_alone_with_model_equals_the_checkpoint_s_evaluation(run, tmp_path):
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    torch.save(state["model"], tmp_path / "weights.pt")  # what users write by hand
    data = ["--synth-val", "24", "--synth-classes", "3", "--image-size", "32", "-j", "0"]
    full, alone = tmp_path / "full", tmp_path / "alone"
    ckpt = str(run / "checkpoints" / "best.pt")
    assert main(["eval", "--checkpoint", ckpt, *data, "--out", str(full)]) == 0
    weights = str(tmp_path / "weights.pt")
    assert main(["eval", "--checkpoint", weights, "--model", "simplenet", *data]) == 0
    assert (
        main(["eval", "--checkpoint", weights, "--model", "simplenet", *data, "--out", str(alone)])
        == 0
    )
    expected = json.loads((full / "best-val" / "metrics.json").read_text())
    for got in (alone / "weights-val", tmp_path / "eval" / "weights-val"):  # --out; beside it
        metrics = json.loads((got / "metrics.json").read_text())
        assert metrics["acc1"] == expected["acc1"] and metrics["loss"] == pytest.approx(
            expected["loss"]
        )
    assert main(["eval", "--checkpoint", ckpt, "--model", "vit", *data]) == 2  # not for runs


def test_data_synth_writes_a_tree_that_trains(tmp_path, capsys):
    root = tmp_path / "synth"
    args = ["--out", str(root), "--train", "30", "--val", "9", "--size", "32", "--classes", "3"]
    assert main(["data", "synth", *args]) == 0
    assert (root / "masks" / "val" / "00000009.png").is_file()
    assert len((root / "train.txt").read_text().splitlines()) == 30
    assert (
        main(
            [
                "train",
                "--data",
                "miniplaces",
                "--data-root",
                str(root),
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--workers",
                "0",
                "--out-dir",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    assert "scenelab train --data miniplaces" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "scenelab", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "train" in out and "eval" in out and "data" in out


def test_train_with_the_unfold_conv_matches_native_and_says_so(tmp_path):
    native = _train(tmp_path / "native")
    unfold = _train(tmp_path / "unfold", "--conv", "unfold")
    summary = json.loads((unfold / "summary.json").read_text())
    assert summary["conv"] == "unfold" and summary["peak_memory_mb"] > 0
    assert summary["seconds_per_epoch"] > 0
    a, b = read_rows(native / "metrics.jsonl"), read_rows(unfold / "metrics.jsonl")
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in b] == pytest.approx([r[key] for r in a], rel=1e-4)


def test_bench_conv_prints_times_ratios_and_layers(capsys):
    flags = ["--batch-size", "2", "--sizes", "32,16", "--num-classes", "5", "--steps", "1"]
    flags += ["--warmup", "0", "--memory-repeats", "0", "--layer-repeats", "1"]
    assert main(["bench", "conv", *flags]) == 0
    out = capsys.readouterr().out
    for label in ("nn.Conv2d, oneDNN off", "UnfoldConv2d, channels_last", "features.14"):
        assert label in out
    assert out.count("UnfoldConv2d / nn.Conv2d: time") == 2 and "ms/step" in out  # both sizes
    assert "course layer / nn.Conv2d: time" in out and "UnfoldConv2d / course layer" in out


def test_vit_trains_with_the_course_recipe_and_evaluates(tmp_path):
    run = _train(tmp_path, "--model", "vit", "--embed-dim", "32", "--window-block-indexes", "1")
    cfg = RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 0.01, 0.05)
    assert cfg.optim.clip_grad == 1.0
    assert cfg.model.embed_dim == 32 and cfg.model.depth == 4  # the model's defaults, resolved
    assert cfg.model.window_block_indexes == (1,)
    ckpt = run / "checkpoints" / "best.pt"
    # Evaluating at another size: the model is built as trained, its position table resized.
    assert main(["eval", "--checkpoint", str(ckpt), "--workers", "0", "--image-size", "48"]) == 0


def test_flags_and_files_override_the_model_recipe(tmp_path):
    run = _train(tmp_path / "a", "--model", "vit", "--embed-dim", "16", "--lr", "0.001")
    cfg = RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.optim.lr == 0.001 and cfg.optim.optimizer == "adamw"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: vit\nembed_dim: 16\noptimizer: sgd\nhead_norm: false\n")
    run = _train(tmp_path / "b", "--config", str(recipe))
    cfg = RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.optim.optimizer == "sgd" and cfg.optim.lr == 0.01 and not cfg.model.head_norm


def test_settings_for_another_model_are_refused_before_any_work(tmp_path, capsys):
    assert main(["train", "--depth", "6", "--out-dir", str(tmp_path)]) == 2
    assert "--depth does not apply to simplenet; it applies to: vit, msvit" in (
        capsys.readouterr().err
    )
    assert not list(tmp_path.iterdir())


def test_resnet18_fine_tunes_from_a_local_weights_file(tmp_path, capsys):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    flags = ["--model", "resnet18", "--weights", str(tmp_path / "r18.pth"), "--epochs", "1"]
    run = _train(tmp_path / "runs", *flags, "--freeze-backbone")
    assert f"Loading {tmp_path / 'r18.pth'}" in capsys.readouterr().out
    cfg = RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.optim.backbone_lr_scale == 0.1 and cfg.optim.lr == 0.01
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["model"]["head.weight"].shape == (3, 512)
    assert main(["eval", "--checkpoint", str(run / "checkpoints/last.pt"), "--workers", "0"]) == 0


def test_models_lists_the_registry_with_parameters_and_flops(capsys):
    assert main(["models", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^simplenet +365,028 ", out, re.M) and re.search(
        r"^vit +1,949,860 ", out, re.M
    )
    for name in ("resnet_bn", "resnet_cpu", "msvit", "resnet18"):
        assert re.search(rf"^{name} ", out, re.M)
    assert "adamw lr 0.01 clip 1" in out and "tv:NAME" in out


def test_bench_models_prints_a_table_and_writes_csv(tmp_path, capsys):
    flags = ["--models", "simplenet,vit", "--sizes", "32,48", "--batch-size", "2", "--steps", "1"]
    flags += ["--warmup", "0", "--memory-repeats", "0", "--out-dir", str(tmp_path)]
    assert main(["bench", "models", *flags]) == 0
    out = capsys.readouterr().out
    assert "vs simplenet" in out and "1.00x" in out
    (csv_file,) = (tmp_path / "bench").glob("models-*.csv")
    rows = csv_file.read_text().splitlines()
    assert rows[0].startswith("model,image_size,params,gflops,ms_per_step") and len(rows) == 5


def test_pretrained_offline_fails_first_with_how_to_pass_weights(tmp_path, monkeypatch, capsys):
    import socket

    import scenelab.models as models
    from scenelab.models.pretrained import download_state_dict

    with socket.socket() as s:  # a port that nothing listens on: as offline as it gets
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/resnet18-f37072fd.pth"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(
        models, "imagenet_state_dict", lambda name, progress: download_state_dict(url)
    )
    flags = ["--model", "resnet18", "--pretrained", "--out-dir", str(tmp_path / "runs")]
    assert main(["train", *flags]) == 2
    captured = capsys.readouterr()
    assert "could not download pretrained weights" in captured.err
    assert "pass it with --weights PATH" in captured.err
    assert "Preparing" not in captured.out and not (tmp_path / "runs").exists()


def test_training_switches_are_recorded_and_the_final_evaluation_is_written(
    tmp_path,
):
    out = tmp_path / "runs"
    flags = ["--augment", "light", "--tta", "--ema-decay", "0.9", "--accum-steps", "2"]
    flags += ["--progressive-resize", "16"]
    assert main(["train", *TINY_TRAIN, *flags, "--out-dir", str(out)]) == 0
    (run,) = out.iterdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["augment"] == "light" and cfg["train"]["tta"] is True
    assert cfg["train"]["progressive_resize"] == 16 and cfg["train"]["resize_ramp_end"] == 0.75
    assert cfg["train"]["ema_decay"] == 0.9 and cfg["train"]["accum_steps"] == 2
    assert {"val_ema_acc1", "val_ema_loss"} <= read_rows(run / "metrics.jsonl")[-1].keys()
    final = json.loads((run / "eval" / "final-val" / "metrics.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert final["tta"] is True and final["epoch"] == 2 and final["images"] == 24
    assert final["acc1"] == summary["final_val_acc1"]
    rows = (run / "eval" / "final-val" / "per_class.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header and the three classes
    with pytest.raises(SystemExit):  # argparse refuses it, listing the choices
        main(["train", "--augment", "strong"])


def test_progressive_resize_is_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "runs"
    for flags, says in [
        (["--image-size", "32", "--progressive-resize", "32"], "smaller than the image size 32"),
        (["--resize-ramp-start", "0.8", "--resize-ramp-end", "0.5"], "0 <= start <= end <= 1"),
        (["--progressive-resize", "-8"], "--progressive-resize: -8 must be at least 0"),
    ]:
        try:
            status = main(["train", *flags, "--out-dir", str(out)])
        except SystemExit as refused:  # refused while the flags are parsed
            status = refused.code
        assert status == 2
        assert says in capsys.readouterr().err
    assert not out.exists()


def test_time_budget_plans_the_run_and_records_its_epochs(tmp_path, capsys):
    # How the budget is spent is tested on a simulated clock (test_budget.py); this is the wiring.
    flags = [f for f in TINY_TRAIN if f not in ("--epochs", "2")]
    assert main(["train", *flags, "--time-budget", "8s", "--out-dir", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())["train"]
    summary = json.loads((run / "summary.json").read_text())
    out = capsys.readouterr().out
    assert "epochs planned as it goes to fit --time-budget 8s" in out and "epoch 1/?" in out
    assert "time budget 8s: training stopped at step" in out and cfg["time_budget"] == "8s"
    assert summary["epochs"] == summary["epochs_planned"] == cfg["epochs"]
    assert summary["time_budget_seconds"] == 8.0 and summary["seconds_at_summary"] <= 8.0
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["budget"]["plan"]["end"] == last["step"]  # saved, and spent
    assert main(["train", "--time-budget", "soon"]) == 2
    assert "expected a duration" in capsys.readouterr().err


def test_val_subset_validates_each_epoch_on_a_fixed_subset_and_the_last_on_all(tmp_path, capsys):
    run = _train(tmp_path, "--epochs", "3", "--val-subset", "10")
    rows = read_rows(run / "metrics.jsonl")
    assert [r["val_images"] for r in rows] == [10, 10, 24]  # TINY_TRAIN has 24 val images
    out = capsys.readouterr().out
    assert out.count("(10 images)") == 2 and out.count("(24 images)") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_images_per_epoch"] == 10 and summary["final_val_images"] == 24
    # The last epoch's figures are those of the whole split: what `eval` measures on last.pt.
    assert (
        main(["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--workers", "0"]) == 0
    )
    measured = json.loads((run / "eval" / "last-val" / "metrics.json").read_text())
    assert measured["images"] == 24
    assert summary["final_val_acc1"] == pytest.approx(measured["acc1"])
    assert summary["min_val_loss"] <= measured["loss"] + 1e-6
    assert rows[-1]["val_loss"] == pytest.approx(measured["loss"], rel=1e-5)
