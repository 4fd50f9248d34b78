import csv

import torch
from torchvision.io import write_png

import scenelab
from scenelab.analysis_config import ExplainConfig
from scenelab.cli import explain as explain_cli
from scenelab.cli import main
from scenelab.data.decode import decode_rgb


def _explain(run, *flags):
    ckpt = str(run / "checkpoints" / "best.pt")
    return main(["explain", "--checkpoint", ckpt, "--workers", "0", *flags])


def test_explain_writes_a_grid_per_image_pictures_maps_and_tensorboard(run, capsys):
    assert _explain(run, "--num", "3") == 0
    out = run / "explain" / "saliency-loss-max"
    assert (out / "grid.png").stat().st_size > 1000
    assert len(list(out.glob("0[0-2]-*.png"))) == 3
    saved = torch.load(out / "maps.pt", weights_only=True)
    assert saved["maps"].shape == (3, 32, 32) and saved["config"]["method"] == "saliency"
    assert f"Results: {out}" in capsys.readouterr().out
    assert _explain(run, "--num", "3") == 0
    assert (run / "explain" / "saliency-loss-max-1" / "grid.png").is_file()  # never overwrites
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["images"]
    assert "explain/saliency-loss-max" in tags


def test_explain_methods_selection_files_and_out(run, tmp_path, capsys):
    flags = "--method grad_cam --select wrong --num 2".split()
    assert _explain(run, *flags, "--out", str(tmp_path)) == 0
    assert (tmp_path / "grad_cam-last" / "grid.png").is_file()
    image = tmp_path / "photo.png"
    write_png((torch.rand(3, 40, 50) * 255).to(torch.uint8), str(image))
    flags = ["--method", "smoothgrad", "--samples", "2", "--images", str(image)]
    assert _explain(run, *flags, "--out", str(tmp_path)) == 0
    out = tmp_path / "smoothgrad-loss-max-n2-s0.1-per-image"  # per image: the photos' default
    assert len(list(out.glob("00-*.png"))) == 1
    assert _explain(run, "--method", "attention_rollout") == 2
    assert "for CNNs use grad_cam" in capsys.readouterr().err


def test_explaining_photos_titles_each_with_its_prediction_and_folder_truth(run, tmp_path, capsys):
    classes = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["classes"]
    (tmp_path / classes[1]).mkdir()
    photos = [tmp_path / classes[1] / "a.png", tmp_path / "b.png"]
    for photo in photos:
        write_png((torch.rand(3, 36, 44) * 255).to(torch.uint8), str(photo))
    flags = ["--images", *map(str, photos), "--out", str(tmp_path / "maps")]
    assert _explain(run, *flags) == 0
    (folder,) = (tmp_path / "maps").iterdir()
    saved = torch.load(folder / "maps.pt", weights_only=True)
    model, _, transform = scenelab.load_run(run)
    x = torch.stack([transform(decode_rgb(p)) for p in photos])
    with torch.no_grad():
        best, pred = model(x).softmax(1).max(1)
    for title, photo, p, c in zip(
        saved["titles"], photos, best.tolist(), pred.tolist(), strict=True
    ):
        assert title.startswith(f"{photo.name}: {classes[c]} {100 * p:.1f}%")
    assert saved["titles"][0].endswith(f"(true {classes[1]})") and "true" not in saved["titles"][1]
    assert saved["config"]["per_image"] is True
    assert "\n".join(saved["titles"]) in capsys.readouterr().out
    assert _explain(run, *flags, "--no-per-image") == 0  # the course's shared threshold on ask
    assert any(not f.name.endswith("per-image") for f in (tmp_path / "maps").iterdir())
    # a folder stands for its images (searched recursively), as in predict
    flags = ["--images", str(tmp_path / classes[1]), "--out", str(tmp_path / "folder")]
    assert _explain(run, *flags) == 0
    (folder,) = (tmp_path / "folder").iterdir()
    (title,) = torch.load(folder / "maps.pt", weights_only=True)["titles"]
    assert title.startswith("a.png: ") and title.endswith(f"(true {classes[1]})")


def test_heat_overlays_get_a_colour_bar_and_figures_take_the_format_asked(run, tmp_path):
    flags = ["--num", "2", "--overlay", "heat", "--format", "svg", "--out", str(tmp_path)]
    assert _explain(run, *flags) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name == "saliency-loss-max-heat"
    assert (folder / "grid.png").is_file() and (folder / "grid.svg").is_file()
    pictures = sorted(folder.glob("0*-*.svg"))
    assert len(pictures) == 2 and not list(folder.glob("0*-*.png"))
    svg = pictures[0].read_text()
    assert "x the map" in svg  # the colour bar's label


def test_explain_score_prints_and_saves_the_quality_table(run, capsys):
    assert _explain(run, "--score", "--limit", "6", "--steps", "4", "--samples", "2") == 0
    out = capsys.readouterr().out
    assert "pointing %" in out and "integrated_gradients" in out and "rank corr" in out
    with open(run / "explain" / "score" / "score.csv") as f:
        rows = list(csv.DictReader(f))
    methods = [r["method"] for r in rows]
    assert methods == ["saliency", "smoothgrad", "integrated_gradients", "grad_cam"]
    assert all(0 <= float(r["pointing_game"]) <= 100 and r["images"] == "6" for r in rows)


BENCH = "bench explain --batch-size 2 --image-size 32 --samples 2 --steps 2 --repeats 1".split()


def test_bench_explain_times_each_method_against_captum(capsys):
    assert main(BENCH) == 0
    out = capsys.readouterr().out
    assert "scenelab/captum" in out
    for method in ("saliency", "smoothgrad", "integrated_gradients", "grad_cam"):
        assert method in out
    assert main([*BENCH, "--model", "vit"]) == 0
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "grad_cam" not in out  # no rollout in captum


def test_bench_explain_without_captum_says_how_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import raises ImportError
    assert main(BENCH) == 2
    assert "pip install -e '.[test]'" in capsys.readouterr().err


def test_explain_score_reads_masks_from_a_miniplaces_layout(run, tiny_miniplaces, tmp_path, capsys):
    flags = ["--score", "--data", "miniplaces", "--data-root", str(tiny_miniplaces)]
    assert _explain(run, *flags, "--steps", "2", "--samples", "2", "--out", str(tmp_path)) == 0
    with open(tmp_path / "score" / "score.csv") as f:
        assert [r["images"] for r in csv.DictReader(f)] == ["6"] * 4
    assert _explain(run, "--score", "--data", "folder", "--data-root", str(tmp_path)) == 2
    assert "folder datasets have no object masks" in capsys.readouterr().err


def test_explain_refuses_data_with_other_classes(run, capsys):
    assert _explain(run, "--synth-classes", "4") == 2
    assert "4 classes that differ from the checkpoint's 3" in capsys.readouterr().err


def test_figures_are_titled_from_the_settings(run, tmp_path, monkeypatch):
    cfg = ExplainConfig()
    assert explain_cli.explain_title(cfg, "simplenet", "synthetic val") == (
        "saliency of the loss, max over colour channels; red where the map exceeds 2x the "
        "maps' mean\nsimplenet, synthetic val"
    )
    smooth = ExplainConfig(method="smoothgrad", objective="logit", overlay="heat")
    assert explain_cli.explain_title(smooth, "vit", "your images").startswith(
        "SmoothGrad (16 samples, noise 0.1) of the logit, max over colour channels; heat overlay"
    )
    titles = []
    grid = explain_cli.explain_grid

    def spy(*args, **kwargs):
        titles.append(kwargs["title"])
        return grid(*args, **kwargs)

    monkeypatch.setattr(explain_cli, "explain_grid", spy)
    assert _explain(run, "--num", "2", "--out", str(tmp_path)) == 0
    expected = explain_cli.explain_title(cfg, "simplenet", "synthetic val")
    assert titles == [expected] * 3  # the grid and each image's figure
