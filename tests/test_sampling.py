import torch
from torch.utils.data import DataLoader, Dataset, Subset

from scenelab.data.sampling import ResumableSampler, SeededDataset


class Noisy(Dataset):
    """Each item draws from the global torch RNG, as augmentation does."""

    classes = ["a", "b"]

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return torch.rand(3) + i, i % 2


def test_sampler_orders_each_epoch_by_seed_and_resumes_part_way():
    data = Noisy()
    sampler = ResumableSampler(data, seed=3)
    sampler.set_position(1)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10)) and len(sampler) == 10
    assert list(sampler) == first  # the same epoch again: the same keys
    sampler.set_position(2)
    assert [i for i, _ in sampler] != [i for i, _ in first]
    sampler.set_position(1, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 6


def test_ranks_split_an_epoch_without_overlap():
    data = Noisy()
    shares = []
    for rank in range(2):
        sampler = ResumableSampler(data, seed=0, rank=rank, world=2)
        sampler.set_position(1)
        shares.append({i for i, _ in sampler})
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(range(10))


def test_augmentation_depends_only_on_the_key_not_on_workers_or_order():
    data = SeededDataset(Noisy())
    sampler = ResumableSampler(data, seed=0)
    sampler.set_position(1)
    keys = list(sampler)
    alone = torch.stack([data[k][0] for k in reversed(keys)]).flip(0)
    torch.manual_seed(123)  # the caller's random state does not matter either
    loaded = [x for x, _ in DataLoader(data, batch_size=4, sampler=sampler, num_workers=2)]
    assert torch.equal(torch.cat(loaded), alone)
    assert data.classes == ["a", "b"]  # attributes of the wrapped dataset pass through


def test_a_wrapped_subset_is_read_item_by_item():
    data = SeededDataset(Subset(Noisy(), range(4)))  # Subset's __getitems__ must not leak
    sampler = ResumableSampler(data, seed=0)
    (x, y), *_ = DataLoader(data, batch_size=4, sampler=sampler)
    assert x.shape == (4, 3) and sorted(y.tolist()) == [0, 0, 1, 1]
