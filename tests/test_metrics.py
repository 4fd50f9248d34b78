import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scenelab.evaluation import evaluate
from scenelab.metrics import RunningSums, confusion_matrix, correct_topk, per_class_accuracy


def test_topk_counts_known_answer():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([2, 0, 0])
    top1, top2, top5 = correct_topk(logits, target, (1, 2, 5))
    assert (top1.item(), top2.item(), top5.item()) == (1, 2, 3)  # k > classes counts all


def test_confusion_matrix_and_per_class_accuracy():
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 1, 2, 2, 2, 0])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    assert torch.allclose(per_class_accuracy(cm), torch.tensor([50.0, 100.0, 200 / 3]).double())


def test_running_sums_average_per_sample():
    sums = RunningSums()
    sums.add(2, loss=torch.tensor(4.0), acc1=torch.tensor(1))
    sums.add(3, loss=torch.tensor(3.0), acc1=torch.tensor(3))
    assert sums.means({"acc1": 100.0}) == {"loss": 7 / 5, "acc1": 80.0}


@pytest.mark.parametrize("mean", ["logits", "softmax"])
def test_flip_tta_averages_the_logits_or_the_probabilities_of_image_and_mirror(mean):
    """Known answer: a linear model, so the mirror's logits differ from the image's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))
    x, y = torch.rand(8, 3, 4, 5), torch.randint(0, 6, (8,))
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    got = evaluate(model, loader, device=torch.device("cpu"), tta=True, tta_mean=mean)
    with torch.no_grad():
        a, b = model(x), model(x.flip(-1))
    if mean == "logits":  # the course template's
        averaged = (a + b) / 2
    else:
        averaged = ((a.softmax(1) + b.softmax(1)) / 2).log()
    assert got["loss"] == pytest.approx(F.cross_entropy(averaged, y).item(), rel=1e-5)
    assert got["acc1"] == pytest.approx(100 * (averaged.argmax(1) == y).float().mean().item())
    plain = evaluate(model, loader, device=torch.device("cpu"))
    assert plain["loss"] == pytest.approx(F.cross_entropy(a, y).item(), rel=1e-5)
