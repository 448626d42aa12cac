"""The deterministic, resumable data order of the training engine.

(The ``Dataset`` over shard stores is :class:`semantic_genesis.io.shard_dataset.StoreDataset`.)

* :class:`EpochSampler` makes the data order a pure function of ``(seed, epoch)`` and splits it
  between DDP ranks; it can start in the middle of an epoch, which is how a resumed run sees exactly
  the batches an uninterrupted run would have seen. :class:`EpochBatches` cuts it into batches: the
  engine's default batch sampler (a method may give its own, see
  :meth:`semantic_genesis.methods.base.Method.batch_sampler`).
* :class:`StepBatches` is what the engine's training loader iterates: the batches of one epoch from
  the resume point on (optionally numbered with their steps for ``train.transforms_on=workers``).
* :class:`ValidationBatches` is the fixed, ordered validation set, shared between DDP ranks.
* :class:`NumberedDataset`, :class:`NumberedValidationBatches` and :class:`PreparingCollate` run a
  method's ``prepare_batch`` in the loader workers (``train.transforms_on=workers``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from semantic_genesis.errors import DataError
from semantic_genesis.utils.seeding import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.methods.base import EpochBatchSampler


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank: a pure function of ``(seed, epoch, rank, world_size)``.

    The epoch is ``num_batches`` batches of ``batch_size`` items per rank. Items are drawn from
    consecutive seeded permutations of the dataset (a new permutation when one is used up, so an
    epoch can be longer than the dataset), and the global batch of step ``s`` is split so that rank
    ``r`` gets rows ``r::world_size`` of it, as DistributedSampler does.

    Args:
        length: dataset size (> 0).
        batch_size: items per batch per rank.
        num_batches: batches per epoch per rank.
        seed: base seed.
        shuffle: ``False`` gives the items in order (validation), cycling if needed.
        rank, world_size: DDP position.

    Call :meth:`set_epoch` before iterating and :meth:`set_start` to skip the first batches of the
    epoch when resuming.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        num_batches: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if length <= 0:
            raise DataError("cannot sample from an empty dataset")
        self.length = int(length)
        self.batch_size = int(batch_size)
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, batch: int) -> None:
        """Skip the first ``batch`` batches of the epoch (resume)."""
        self.start_batch = int(batch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """``(num_batches * batch_size,)`` indices of this rank for ``epoch`` (all batches)."""
        total = self.num_batches * self.batch_size * self.world_size
        chunks = []
        have, k = 0, 0
        while have < total:
            if self.shuffle:
                g = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch, k))
                chunk = torch.randperm(self.length, generator=g).numpy()
            else:
                chunk = np.arange(self.length)
            chunks.append(chunk)
            have += len(chunk)
            k += 1
        order = np.concatenate(chunks)[:total].reshape(self.num_batches, self.batch_size * self.world_size)
        return order[:, self.rank :: self.world_size].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)[self.start_batch * self.batch_size :]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return (self.num_batches - self.start_batch) * self.batch_size


class EpochBatches(Sampler[list[int]]):
    """The batches of an :class:`EpochSampler`: the engine's default batch sampler.

    Batch ``b`` of an epoch is items ``[b * batch_size, (b + 1) * batch_size)`` of the sampler's epoch
    indices; :meth:`set_epoch` / :meth:`set_start` are those of the sampler. This is the
    :class:`~semantic_genesis.methods.base.EpochBatchSampler` protocol that a method's own batch
    sampler also follows.
    """

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler
        self.num_batches = sampler.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_start(self, batch: int) -> None:
        self.sampler.set_start(batch)

    def __iter__(self) -> Iterator[list[int]]:
        s = self.sampler
        indices = s.epoch_indices(s.epoch)
        for batch in range(s.start_batch, s.num_batches):
            yield indices[batch * s.batch_size : (batch + 1) * s.batch_size].tolist()

    def __len__(self) -> int:
        return self.sampler.num_batches - self.sampler.start_batch


def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack dict samples into a batch dict (images float32, indices and labels int64)."""
    batch: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.as_tensor(values, dtype=torch.int64 if isinstance(values[0], (int, np.integer)) else None)
    return batch


class ValidationBatches(Sampler[list[int]]):
    """Batch sampler of the fixed validation set: batch ``i`` is items ``[i*B, (i+1)*B)`` in order.

    Rank ``r`` of ``world_size`` gets batches ``r, r + world_size, ...``; :meth:`batch_ids` says
    which global batch indices those are (each is transformed with a generator seeded from
    ``(seed, "validation", i)``, so the set is the same every epoch and for any number of ranks).

    Args:
        length: validation set size.
        batch_size: items per batch (the last batch may be smaller).
        max_batches: use only the first ``max_batches`` batches (0 = all).
        rank, world_size: DDP position.
    """

    def __init__(self, length: int, batch_size: int, max_batches: int = 0, rank: int = 0, world_size: int = 1):
        self.length = int(length)
        self.batch_size = int(batch_size)
        total = (self.length + self.batch_size - 1) // self.batch_size
        self.total_batches = min(total, max_batches) if max_batches > 0 else total
        self.rank = rank
        self.world_size = world_size

    def batch_ids(self) -> list[int]:
        return list(range(self.rank, self.total_batches, self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        for i in self.batch_ids():
            yield list(range(i * self.batch_size, min((i + 1) * self.batch_size, self.length)))

    def __len__(self) -> int:
        return len(self.batch_ids())


# --------------------------------------------------------------------------------------------------
# Transforms in the data-loader workers (train.transforms_on=workers)
# --------------------------------------------------------------------------------------------------
_NUMBER = "_transform_number"  # sample key carrying the step (training) or batch id (validation)


def transform_seed(seed: int, kind: str, number: int, rank: int = 0) -> int:
    """Seed of the transform generator of training step ``number`` (``kind="train"``) or validation
    batch ``number`` (``kind="validation"``) on DDP rank ``rank``.

    Rank 0 (and a single process) uses ``(seed, kind, number)``; other ranks add their rank so that
    the ranks of one training step transform their shares with different draws.
    """
    if kind == "train" and rank > 0:
        return derive_seed(seed, kind, number, "rank", rank)
    return derive_seed(seed, kind, number)


class NumberedDataset(Dataset):
    """``dataset`` indexed by ``(key, number)`` pairs: the sample of ``key`` tagged with ``number``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[Any, int]) -> dict[str, Any]:
        index, number = key
        sample = dict(self.dataset[index])
        sample[_NUMBER] = int(number)
        return sample


class StepBatches(Sampler[list[Any]]):
    """The engine's training batch sampler: batches ``start .. steps_per_epoch - 1`` of the current
    epoch of a batch sampler (a method's :meth:`~semantic_genesis.methods.base.Method.batch_sampler`
    or :class:`EpochBatches`).

    With ``numbered=True`` (``train.transforms_on=workers``) every key becomes ``(key, step)`` with
    the global step of its batch, ``epoch * steps_per_epoch + batch`` (the engine's step counter), so
    that :class:`PreparingCollate` seeds the transform exactly as the step would.

    Args:
        batches: an :class:`~semantic_genesis.methods.base.EpochBatchSampler`.
        steps_per_epoch: batches used per epoch (at most ``batches.num_batches``).
        numbered: key items with their step.
    """

    def __init__(self, batches: "EpochBatchSampler", steps_per_epoch: int | None = None, numbered: bool = False):
        self.batches = batches
        self.steps_per_epoch = int(batches.num_batches if steps_per_epoch is None else steps_per_epoch)
        if not 0 < self.steps_per_epoch <= batches.num_batches:
            raise DataError(f"steps_per_epoch {self.steps_per_epoch} is not in 1..{batches.num_batches} (batches per epoch)")
        self.numbered = numbered
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batches.set_epoch(epoch)

    def set_start(self, batch: int) -> None:
        """Skip the first ``batch`` batches of the epoch (resume)."""
        self.start_batch = int(batch)
        self.batches.set_start(batch)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch, keys in zip(range(self.start_batch, self.steps_per_epoch), self.batches):
            if self.numbered:
                step = self.epoch * self.steps_per_epoch + batch
                yield [(key, step) for key in keys]
            else:
                yield list(keys)

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.start_batch, 0)


class NumberedValidationBatches(Sampler[list[tuple[int, int]]]):
    """The batches of a :class:`ValidationBatches`, each item keyed with its global batch id."""

    def __init__(self, batches: "ValidationBatches"):
        self.batches = batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch_id, items in zip(self.batches.batch_ids(), self.batches):
            yield [(i, batch_id) for i in items]

    def __len__(self) -> int:
        return len(self.batches)


class PreparingCollate:
    """Collate that also runs the method's :attr:`~semantic_genesis.methods.base.Method.prepare_batch`
    (in the loader worker, on the CPU) with the generator the step would have used.

    Args:
        method: the pretraining method (its ``prepare_batch`` draws only from the generator).
        seed: the run's seed.
        kind: ``"train"`` or ``"validation"``.
        rank: DDP rank (training seeds depend on it, see :func:`transform_seed`).
    """

    def __init__(self, method: Any, seed: int, kind: str, rank: int = 0):
        self.method = method
        self.seed = int(seed)
        self.kind = kind
        self.rank = int(rank)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from semantic_genesis.methods.base import PREPARED

        numbers = {sample.pop(_NUMBER) for sample in samples}
        if len(numbers) != 1:
            raise DataError(f"a batch mixes items of several steps/batches: {sorted(numbers)}")
        number = numbers.pop()
        batch = collate(samples)
        generator = torch.Generator().manual_seed(transform_seed(self.seed, self.kind, number, self.rank))
        batch.update(self.method.prepare_batch(batch, generator))
        batch[PREPARED] = torch.tensor(number)
        return batch
