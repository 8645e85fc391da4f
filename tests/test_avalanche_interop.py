"""The Avalanche adapter measures exactly what Avalanche itself measures,
and any stream exports as an Avalanche benchmark."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from replaybench.agents._nets import build_network
from replaybench.interop import to_avalanche_benchmark
from replaybench.runner import RunSpec, make_stream, run, seed_everything

OPTIONS = {"epochs": 2, "hidden": [64], "lr": 0.05, "batch_size": 32}


@pytest.fixture(scope="module")
def digits():
    return make_stream("split-digits")


def avalanche_own_accuracies(stream, strategy_name: str, seed: int, **strategy_kwargs) -> list[list[float]]:
    """Avalanche alone: train each experience, then evaluate with its own accuracy metric."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import avalanche.training as training
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin

    seed_everything(seed)
    model = build_network("mlp", stream.input_shape, OPTIONS["hidden"], stream.n_classes)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    strategy = getattr(training, strategy_name)(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=OPTIONS["lr"]),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=OPTIONS["batch_size"],
        train_epochs=OPTIONS["epochs"],
        eval_mb_size=512,
        evaluator=evaluator,
        **strategy_kwargs,
    )
    bm = to_avalanche_benchmark(stream)
    rows = []
    for exp in bm.train_stream:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            strategy.train(exp, num_workers=0)
        with torch.random.fork_rng():  # a DataLoader draws a seed from the global RNG even unshuffled
            results = strategy.eval(bm.test_stream, num_workers=0)
        rows.append(
            [results[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(len(bm.test_stream))]
        )
    return rows


@pytest.mark.parametrize("strategy, kwargs", [("Naive", {}), ("Replay", {"mem_size": 100})])
def test_adapter_R_equals_avalanches_own_accuracy(digits, strategy, kwargs):
    ours = run(
        RunSpec(
            stream="split-digits",
            agent=f"avalanche:{strategy}",
            seed=7,
            agent_options={**OPTIONS, "strategy_options": kwargs},
        ),
        stream=digits,
    )
    theirs = avalanche_own_accuracies(digits, strategy, seed=7, **kwargs)
    assert np.allclose(ours.R, theirs, rtol=0, atol=1e-6), (ours.R, theirs)
    assert max(ours.R[0]) > 0.9  # it really trained


def test_exported_stream_keeps_data_classes_and_task_labels():
    stream = make_stream("split-digits-task")
    bm = to_avalanche_benchmark(stream)
    assert len(bm.train_stream) == len(stream.experiences)
    for exp, ours in zip(bm.train_stream, stream.experiences):
        assert sorted(exp.classes_in_this_experience) == sorted(ours.classes)
        assert exp.task_label == ours.task_id
        x, y, t = exp.dataset[0]
        assert torch.equal(x, ours.train_x[0]) and int(y) == int(ours.train_y[0]) and t == ours.task_id
