"""Unsupervised streams: the supervised splits with the labels withheld.

An unsupervised experience (``kind="unsupervised"``) hands the agent
``train_x`` only: ``train_y`` is ``None``. The agent learns from the images
and is queried through ``embed(x) -> [N, F]``. The labels stay in the
experience for the runner's probe alone: the training labels under
``info["probe_train_y"]`` (:data:`replaybench.evaluation.PROBE_LABELS_KEY`)
and the test labels as ``test_y``, exactly as a supervised experience keeps
its test labels. An agent must not read either. The probe protocol is
:func:`replaybench.evaluation.unsupervised_probe_scores`.

The experiences share the tensors of the underlying split stream (views,
no copy), and the fingerprint is the split's definition under the
"unsupervised" scenario.

Example:
    >>> stream = make_unsupervised_split(name="unsup-split-digits", dataset="digits")
    >>> stream.experiences[0].train_y is None, stream.experiences[0].kind
    (True, 'unsupervised')
"""

from __future__ import annotations

from dataclasses import replace

from replaybench.evaluation import PROBE_LABELS_KEY
from replaybench.streams.base import TensorStream
from replaybench.streams.vision import make_split


def make_unsupervised_split(
    *,
    name: str,
    dataset: str,
    n_experiences: int = 5,
    class_order_seed: int | None = None,
    train_per_class: int | None = None,
    online_batch_size: int | None = None,
    version: str = "1",
    data_dir: str | None = None,
    download: bool = False,
) -> TensorStream:
    """The class-IL split of :func:`replaybench.streams.vision.make_split`, without training labels.

    Args:
        name: The stream's name.
        dataset: A key of :data:`replaybench.streams.vision.LOADERS`.
        n_experiences: Number of experiences; must divide the number of classes.
        class_order_seed: ``None`` keeps the natural class order; an int
            shuffles it with that seed.
        train_per_class: Keep only the first k training items of each class.
        online_batch_size: Make the stream online (see :mod:`replaybench.streams.vision`).
    """
    split = make_split(
        name=name,
        dataset=dataset,
        n_experiences=n_experiences,
        scenario="class-il",
        class_order_seed=class_order_seed,
        train_per_class=train_per_class,
        online_batch_size=online_batch_size,
        version=version,
        data_dir=data_dir,
        download=download,
    )
    experiences = tuple(
        replace(e, kind="unsupervised", train_y=None, info={**e.info, PROBE_LABELS_KEY: e.train_y})
        for e in split.experiences
    )
    return replace(split, scenario="unsupervised", experiences=experiences, _fingerprint=[])
