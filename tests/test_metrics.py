import torch

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
