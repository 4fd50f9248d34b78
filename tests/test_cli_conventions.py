"""The command-line conventions: --version, timm/torchvision aliases, named help groups,
`scenelab runs`, and `compare` over a folder that holds its own outputs."""

import shutil
import subprocess
import sys

import pytest
import yaml

from scenelab.cli import build_parser, main


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("scenelab 0.")


def test_the_short_names_from_timm_and_torchvision_set_the_same_settings(capsys):
    flags = ["-b", "32", "-j", "0", "--wd", "0.01", "--img-size", "48", "--opt", "adamw"]
    assert main(["train", "-c", "simplenet", *flags, "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["batch_size"] == 32 and cfg["data"]["workers"] == 0
    assert cfg["data"]["image_size"] == 48 and cfg["optim"]["weight_decay"] == 0.01
    assert cfg["optim"]["optimizer"] == "adamw" and cfg["train"]["epochs"] == 60  # the recipe's


@pytest.mark.parametrize(
    "command, groups",
    [
        (["train"], ["data", "model", "optimiser", "training", "adversarial training"]),
        (["explain"], ["explain", "data"]),
        (["attack"], ["attack", "data"]),
        (["bench", "conv"], ["benchmark"]),
    ],
)
def test_help_groups_are_named_for_people(command, groups):
    sub = build_parser()._subparsers._group_actions[0].choices[command[0]]
    if len(command) > 1:
        sub = sub._subparsers._group_actions[0].choices[command[1]]
    help_text = sub.format_help()
    for group in groups:
        assert f"\n{group}:\n" in help_text
    assert "Config:" not in help_text


def test_explain_names_its_overlay_threshold_apart_from_the_attack_step():
    explain = build_parser()._subparsers._group_actions[0].choices["explain"].format_help()
    assert "--threshold" in explain and "--alpha" not in explain


def test_runs_lists_run_folders_and_compare_skips_its_own_outputs(run, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    assert main(["compare", str(runs / run.name), "--out", str(runs)]) == 0
    (compare,) = runs.glob("compare-*")
    capsys.readouterr()
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert run.name in out and "simplenet" in out and "synthetic" in out
    assert "compare-" not in out
    assert main(["compare", *map(str, sorted(runs.iterdir())), "--out", str(tmp_path)]) == 0
    assert f"skipping {compare}: not a run folder" in capsys.readouterr().out
    (runs / run.name / "summary.json").unlink()  # as while the run is still training
    assert main(["runs", str(runs)]) == 0
    assert "(not finished)" in capsys.readouterr().out


def test_runs_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err


def test_help_imports_no_torch_so_it_answers_at_once():
    """Help is built from the config dataclasses alone; each command's module (and torch) is
    imported when the command runs. (How long it takes is `time scenelab --help`.)"""
    code = (
        "import sys\n"
        "from scenelab.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['bench', 'conv', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules, 'help imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_help_s_choices_are_the_registries():
    from scenelab.cli.commands import EXPORT_FORMATS
    from scenelab.config import CONVS
    from scenelab.export import FORMATS
    from scenelab.models import CONV_LAYERS

    assert tuple(CONV_LAYERS) == CONVS and set(FORMATS) == set(EXPORT_FORMATS)


def test_eval_explain_and_attack_list_no_training_only_flags():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("eval", "explain", "attack"):
        text = commands[name].format_help()
        assert (
            "--augment" not in text and "--cache-images" not in text and "--synth-train" not in text
        )
        assert "--data-root" in text and "--workers" in text


@pytest.mark.parametrize("command", ["eval", "explain", "attack", "predict", "export"])
def test_every_command_that_reads_a_model_takes_a_run_folder_or_a_checkpoint(
    command, run, tmp_path, capsys
):
    extra = ["photo.jpg"] if command == "predict" else []
    parser = build_parser()
    best = run / "checkpoints" / "best.pt"
    for flag, given in (("--run", run), ("--checkpoint", run), ("--checkpoint", best)):
        args = parser.parse_args([command, *extra, flag, str(given)])
        assert args.checkpoint == str(best)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args([command, *extra, "--run", str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere not found; give a run folder or a checkpoint file" in err
    empty = tmp_path / "empty-run"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(SystemExit):
        parser.parse_args([command, *extra, "--run", str(empty)])
    assert "has no checkpoints/best.pt or last.pt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [empty]  # refused while parsing: nothing written


def test_attack_compares_run_folders_too(run):
    args = build_parser().parse_args(
        ["attack", "--run", str(run), "--compare-checkpoint", str(run)]
    )
    assert args.compare_checkpoint == [str(run / "checkpoints" / "best.pt")]
