"""The base of the dataset wrappers: length and attributes (classes, targets, ...) pass through."""

from torch.utils.data import Dataset


class Wrapped(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset" or name.startswith("__"):  # unpickling; protocols (__getitems__)
            raise AttributeError(name)
        return getattr(self.dataset, name)
