import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from scenelab.cli import main
from scenelab.document import Heading, Table
from scenelab.report import ReportError, build_report, write_evaluation, write_report
from scenelab.tracking import RunDir, read_rows


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(unquote(attrs["src"]))
        if tag == "a":
            self.links.append(unquote(attrs["href"]))


def _sources(page: Path) -> _Sources:
    parser = _Sources()
    parser.feed(page.read_text())
    return parser


def _copy(run: Path, tmp_path: Path) -> Path:
    """The shared tiny run without what other tests added to it."""
    dst = tmp_path / run.name
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("explain", "attack", "report*"))
    return dst


def _tables_after(blocks, heading: str) -> Table:
    i = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == heading)
    return next(b for b in blocks[i:] if isinstance(b, Table))


def test_train_writes_the_report_with_every_picture_in_the_folder(run, tmp_path):
    assert (run / "report.html").is_file() and (run / "report.md").is_file()  # by `train`
    folder = _copy(run, tmp_path)
    html, md = write_report(folder)
    sources = _sources(html)
    plots = ["plots/loss.png", "plots/lr.png", "plots/top1.png", "plots/top5.png"]
    assert sources.images == [*plots, "eval/final-val/confusion.png"]
    for src in sources.images + sources.links:  # relative, and there: readable without a server
        assert not src.startswith(("/", "http")) and (folder / src).is_file(), src
    text, last = md.read_text(), read_rows(RunDir(folder).metrics_jsonl)[-1]
    sections = ("## Results", "## Training curves", "## Per-class accuracy")
    for section in (*sections, "### Largest confusions", "## Configuration"):
        assert section in text
    assert "## Explanations" not in text and "## Attacks" not in text
    assert f"| val top-5 | {last['val_acc5']:.2f} |" in text
    summary = json.loads((folder / "summary.json").read_text())
    assert f"| parameters | {summary['params']:,} |" in text
    assert "![confusion matrix, rows normalised](eval/final-val/confusion.png)" in text


def test_per_class_tables_and_confusions_have_known_answers(run, tmp_path):
    folder = _copy(run, tmp_path)
    classes = [f"c{k:02d}" for k in range(25)]
    confusion = torch.zeros(25, 25, dtype=torch.long)
    for k in range(25):  # class k: k % 11 of 10 images right, the rest predicted as k + 1
        confusion[k, k] = k % 11
        confusion[k, (k + 1) % 25] = 10 - k % 11
    metrics = {"acc1": 0.0, "acc5": 0.0, "loss": 0.0, "confusion": confusion}
    shutil.rmtree(folder / "eval" / "final-val")
    write_evaluation(folder / "eval", "final-val", metrics, classes, {"epoch": 2, "tta": False})
    blocks = build_report(RunDir(folder))
    best = _tables_after(blocks, "Best 10 classes").rows
    worst = _tables_after(blocks, "Worst 10 classes").rows  # 3 at 0%: no tie to mention
    assert [r[0] for r in best[:2]] == ["c10", "c21"] and best[0][1:] == ["10", "100.0"]
    assert [r[0] for r in worst[:3]] == ["c00", "c11", "c22"] and worst[0][2] == "0.0"
    confusions = _tables_after(blocks, "Largest confusions").rows
    assert confusions[:3] == [
        ["c00", "c01", "10", "100.0"],
        ["c11", "c12", "10", "100.0"],
        ["c22", "c23", "10", "100.0"],
    ]
    assert len(confusions) == 10
    confusion = torch.eye(25, dtype=torch.long)
    confusion[:12] = torch.eye(25, dtype=torch.long)[12:24]  # 12 classes always wrong
    shutil.rmtree(folder / "eval" / "final-val")
    write_evaluation(folder / "eval", "final-val", metrics | {"confusion": confusion}, classes, {})
    blocks = build_report(RunDir(folder))
    worst = _tables_after(blocks, "Worst 10 classes (12 classes at 0.0%: the first 10 by name)")
    assert [r[0] for r in worst.rows] == classes[:10]


def test_confusion_figures_are_titled_from_the_settings_with_cell_values_up_to_20_classes(
    tmp_path,
):
    from scenelab.plots import plot_confusion

    confusion = torch.tensor([[2, 1, 0], [0, 3, 0], [1, 0, 2]])
    metrics = {"acc1": 77.78, "acc5": 100.0, "loss": 0.5, "confusion": confusion}
    meta = {"model": "simplenet", "epoch": 2, "tta": True, "split": "val"}
    out = write_evaluation(tmp_path, "final-val", metrics, ["a", "b", "c"], meta)
    assert (out / "confusion.png").is_file()
    title = "simplenet, after epoch 2, val: 9 images with flip TTA, top-1 77.78%"
    texts = {}
    for k, name in ((3, "small"), (21, "large")):  # drawn as SVG, its texts are readable
        big = torch.eye(k, dtype=torch.long) * 3
        big[: len(confusion), : len(confusion)] = confusion
        plot_confusion(big, [f"c{i}" for i in range(k)], tmp_path / f"{name}.svg", title)
        texts[name] = (tmp_path / f"{name}.svg").read_text()
    assert title in texts["small"] and title in texts["large"]
    assert "<!-- 67 -->" in texts["small"] and "<!-- 33 -->" in texts["small"]
    assert "<!-- 67 -->" not in texts["large"]  # 21 classes: no cell values


def test_explain_attack_and_eval_refresh_the_report_with_their_results(run, tmp_path):
    folder = _copy(run, tmp_path)
    checkpoint = str(folder / "checkpoints" / "best.pt")
    common = ["--checkpoint", checkpoint, "--workers", "0"]
    assert main(["explain", *common, "--num", "2"]) == 0
    assert main(["attack", *common, "--limit", "8", "--num", "2", "--steps", "2"]) == 0
    assert main(["attack", *common, "--limit", "8", "--steps", "2", "--eps-sweep", "0,4/255"]) == 0
    assert main(["eval", *common, "--tta"]) == 0
    html = folder / "report.html"
    images = _sources(html).images
    assert "explain/saliency-loss-max/grid.png" in images
    assert "attack/pgd-linf-eps8-255-s2/grid.png" in images
    assert any(i.startswith("attack/sweep") and i.endswith("robustness.png") for i in images)
    assert all((folder / src).is_file() for src in images)
    text = (folder / "report.md").read_text()
    assert "## Explanations" in text and "## Attacks" in text and "## Evaluations" in text
    metrics = json.loads((folder / "attack/pgd-linf-eps8-255-s2/metrics.json").read_text())
    (result,) = metrics["results"].values()
    assert f"| {result['clean_acc1']:.2f} | {result['adv_acc1']:.2f} |" in text
    assert "| best-val-tta |" in text


def test_a_failed_report_does_not_fail_the_command_that_saved_results(
    run, tmp_path, capsys, monkeypatch
):
    import scenelab.cli.results as results

    def broken(_):
        raise KeyError("val_acc1")

    monkeypatch.setattr(results, "write_report", broken)
    folder = _copy(run, tmp_path)
    checkpoint = str(folder / "checkpoints/best.pt")
    assert main(["explain", "--checkpoint", checkpoint, *"--num 1 --workers 0".split()]) == 0
    err = capsys.readouterr().err
    assert "could not rebuild the report" in err and f"scenelab report {folder}" in err
    assert (folder / "explain" / "saliency-loss-max" / "grid.png").is_file()


def test_report_of_a_run_in_progress_and_of_a_folder_that_is_not_a_run(run, tmp_path, capsys):
    folder = _copy(run, tmp_path)
    (folder / "summary.json").unlink()
    rows = (folder / "metrics.jsonl").read_text().splitlines()
    (folder / "metrics.jsonl").write_text(rows[0] + "\n")  # one of two epochs finished
    assert main(["report", str(folder)]) == 0
    text = (folder / "report.md").read_text()
    assert "still going on or was stopped" in text and "| epochs | 1 of 2 |" in text
    (folder / "metrics.jsonl").write_text("")
    write_report(folder)
    assert "No epoch has finished yet" in (folder / "report.md").read_text()
    with pytest.raises(ReportError, match="not a run folder"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder (no config.yaml)" in capsys.readouterr().err


def test_learning_rate_is_plotted_per_step_from_tensorboard(run, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    folder = _copy(run, tmp_path)
    with SummaryWriter(str(folder / "tb")) as writer:
        for step in range(10, 210, 10):
            writer.add_scalar("train/lr", 0.1 * step / 200, step)
    html, _ = write_report(folder)
    assert 'alt="learning rate per step"' in html.read_text()
    assert 'alt="learning rate at the end of each epoch"' in (run / "report.html").read_text()


def _chromium() -> str | None:
    browsers = ("chromium", "chromium-browser", "google-chrome")
    return next(filter(None, map(shutil.which, browsers)), None)


def test_report_renders_in_headless_chromium_with_every_image_loaded(run, tmp_path):
    if _chromium() is None:
        if os.environ.get("SCENELAB_REQUIRE_CHROMIUM"):  # CI installs it: never skip there
            pytest.fail("SCENELAB_REQUIRE_CHROMIUM is set but no Chromium is on PATH")
        pytest.skip("needs Chromium (Debian: apt install chromium)")
    folder = _copy(run, tmp_path)
    checkpoint = str(folder / "checkpoints" / "best.pt")
    attack = "--workers 0 --limit 8 --num 2 --steps 2".split()
    assert main(["attack", "--checkpoint", checkpoint, *attack]) == 0
    html = folder / "report.html"
    count = len(_sources(html).images)
    probe = folder / "probe.html"  # the report plus a script that counts the decoded images
    script = (
        "<script>addEventListener('load', () => { const all = [...document.images]; "
        "document.body.dataset.loaded = all.filter(i => i.complete && i.naturalWidth > 0)"
        ".length + '/' + all.length; });</script></body>"
    )
    probe.write_text(html.read_text().replace("</body>", script))
    quiet = "--disable-background-networking --disable-component-update --disable-sync".split()
    flags = [_chromium(), *"--headless --no-sandbox --disable-gpu --no-first-run".split(), *quiet]
    flags.append(f"--user-data-dir={tmp_path / 'profile'}")
    dom = subprocess.run(
        [*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert f'data-loaded="{count}/{count}"' in dom and count >= 6
    shot = tmp_path / "report.png"
    window = ["--window-size=1200,3000", f"--screenshot={shot}"]
    subprocess.run([*flags, *window, html.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_a_metrics_file_cut_by_a_kill_is_read_without_its_last_line(tmp_path):
    from scenelab.tracking import read_rows

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "train_lo')
    with pytest.warns(UserWarning, match="metrics.jsonl: its last line was cut short"):
        assert read_rows(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not a JSON metrics row"):
        read_rows(path)
