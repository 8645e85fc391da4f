"""Readouts of unsupervised spiking features: label assignment and n-grams.

- Label assignment (Diehl & Cook 2015): each neuron is assigned the class
  for which its mean spike count is highest.
- All-activity vote: a class's score is the mean count of its assigned
  neurons.
- Proportion weighting: as all-activity, but each neuron's count is weighted
  by the share of its responses that its assigned class drew (BindsNET
  ``evaluation.py``).
- n-grams (LC-SNN, Saunders et al. 2019): the firing order of a sample is
  its spike events sorted by time (ties by neuron index); every run of ``n``
  consecutive events is counted per class, and a test sample's class score
  is the sum of the counts of its n-grams.

All functions are pure; :class:`ClassRates` accumulates the evidence across
batches and experiences.
"""

from __future__ import annotations

import torch


class ClassRates:
    """Running per-neuron, per-class spike-count sums and sample counts."""

    def __init__(self, n_neurons: int, n_classes: int) -> None:
        self.sums = torch.zeros(n_neurons, n_classes)
        self.samples = torch.zeros(n_classes)

    def add(self, counts: torch.Tensor, labels: torch.Tensor) -> None:
        """Add spike counts ``[N, n_neurons]`` of samples with ``labels [N]``."""
        counts, labels = counts.float().cpu(), labels.long().cpu()
        self.sums.index_add_(1, labels, counts.t())
        self.samples += torch.bincount(labels, minlength=self.samples.numel()).float()

    def merge(self, other: ClassRates) -> None:
        """Add the sums and sample counts of ``other`` (same shape)."""
        self.sums += other.sums
        self.samples += other.samples

    def forget(self, neurons: torch.Tensor) -> None:
        """Drop the record of the ``neurons`` (a bool mask ``[n_neurons]``): their rates become 0."""
        self.sums[neurons.cpu()] = 0.0

    def rates(self) -> torch.Tensor:
        """Mean count of each neuron for each class seen so far ``[n_neurons, C]`` (0 if unseen)."""
        return self.sums / self.samples.clamp_min(1.0)


def assign_labels(rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Assignments ``[n]`` and proportions ``[n, C]`` from mean rates ``[n, C]``.

    A neuron that never fired is assigned class 0 with zero proportions, so it
    votes for nothing under proportion weighting.
    """
    totals = rates.sum(1, keepdim=True)
    proportions = torch.where(totals > 0, rates / totals.clamp_min(1e-12), torch.zeros_like(rates))
    return rates.argmax(1), proportions


def all_activity(counts: torch.Tensor, assignments: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Scores ``[N, C]``: mean count of the neurons assigned to each class."""
    onehot = torch.nn.functional.one_hot(assignments.to(counts.device), n_classes).float()
    per_class = onehot.sum(0).clamp_min(1.0)
    return (counts.float() @ onehot) / per_class


def proportion_weighting(
    counts: torch.Tensor, assignments: torch.Tensor, proportions: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """Scores ``[N, C]``: counts weighted by each neuron's class proportions, per assigned neuron."""
    onehot = torch.nn.functional.one_hot(assignments.to(counts.device), n_classes).float()
    per_class = onehot.sum(0).clamp_min(1.0)
    weights = proportions.to(counts.device) * onehot
    return (counts.float() @ weights) / per_class


def firing_orders(spikes: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every n-gram of consecutive spike events.

    Args:
        spikes: ``[T, B, n_neurons]`` bool.
        n: Length of the grams.

    Returns:
        ``(sample, key)``: for each n-gram, the sample it came from and its key
        ``sum_k neuron_k * n_neurons**k``.
    """
    n_neurons = spikes.shape[2]
    if n_neurons**n >= 2**62:
        raise ValueError(f"{n}-grams over {n_neurons} neurons do not fit an int64 key")
    sample, _, neuron = spikes.permute(1, 0, 2).nonzero(as_tuple=True)  # sorted by (b, t, i)
    if sample.numel() < n:
        return sample[:0], sample[:0]
    windows = sample.numel() - n + 1
    same = torch.ones(windows, dtype=torch.bool, device=sample.device)
    key = torch.zeros(windows, dtype=torch.long, device=sample.device)
    for k in range(n):
        same &= sample[k : k + windows] == sample[:windows]
        key += neuron[k : k + windows] * n_neurons**k
    return sample[:windows][same], key[same]


class NGramScores:
    """n-gram counts per class, accumulated over training batches."""

    def __init__(self, n: int, n_classes: int) -> None:
        self.n, self.n_classes = n, n_classes
        self.keys = torch.zeros(0, dtype=torch.long)
        self.counts = torch.zeros(0, n_classes)

    def add(self, spikes: torch.Tensor, labels: torch.Tensor) -> None:
        """Count the n-grams of ``spikes [T, B, n]`` under the samples' ``labels [B]``."""
        sample, key = firing_orders(spikes.cpu(), self.n)
        label = labels.long().cpu()[sample]
        keys = torch.cat([self.keys, key])
        values = torch.cat([self.counts, torch.nn.functional.one_hot(label, self.n_classes).float()])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros(self.keys.numel(), self.n_classes).index_add_(0, inverse, values)

    def scores(self, spikes: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]`` of the samples in ``spikes [T, B, n]``."""
        batch = spikes.shape[1]
        sample, key = firing_orders(spikes.cpu(), self.n)
        out = torch.zeros(batch, self.n_classes)
        if self.keys.numel() == 0 or key.numel() == 0:
            return out
        pos = torch.searchsorted(self.keys, key).clamp_max(self.keys.numel() - 1)
        known = self.keys[pos] == key
        return out.index_add_(0, sample[known], self.counts[pos[known]])
