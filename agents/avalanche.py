"""Any Avalanche ``SupervisedTemplate`` strategy as a replaybench agent.

``avalanche:EWC`` builds ``avalanche.training.EWC`` around the same network
our native agents use, trains it with Avalanche's own loop on our stream
(exported by :mod:`replaybench.interop`), and leaves evaluation to our
runner, so its R matrix is measured exactly like every other agent's.
Strategy-specific arguments go in ``strategy_options`` and are checked
against the strategy's signature.

``state_bytes`` (:class:`~replaybench.protocols.CountsState`) is offered only
for the strategies whose kept state we can count from Avalanche's own
objects (:data:`COUNTED_STRATEGIES`): Naive (nothing), EWC (its plugin's
importances and saved parameters), LwF (its plugin's copy of the previous
model) and Replay (its storage policy's items, counted as our buffers count
them: input bytes plus an int64 label each). Any other strategy keeps state
of its own kind (Cumulative's union of datasets, GDumb's buffer, SI's
trajectories...) and has no ``state_bytes``, so its memory is reported as
unknown rather than guessed.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from replaybench.agents._nets import build_network, make_optimizer
from replaybench.agents._supervised import TrainingConfig
from replaybench.errors import ConfigError, require_extra
from replaybench.interop import to_avalanche_benchmark
from replaybench.params import InstanceOf, did_you_mean, param
from replaybench.protocols import Experience, Stream, module_bytes, tensor_bytes

# Arguments the adapter sets itself; users may not pass them in strategy_options.
_MANAGED = {
    "model",
    "optimizer",
    "criterion",
    "train_mb_size",
    "train_epochs",
    "eval_mb_size",
    "device",
    "plugins",
    "evaluator",
    "eval_every",
}


@dataclass(frozen=True)
class AvalancheConfig(TrainingConfig):
    variant: str = param("Naive", InstanceOf(str))
    """The strategy class in ``avalanche.training``, e.g. "Replay" (set by the name ``avalanche:Replay``)."""
    strategy_options: dict = field(default_factory=dict, metadata={"constraint": InstanceOf(dict)})
    """Extra constructor arguments of the strategy, e.g. ``{mem_size = 1000}`` for Replay."""

    def __post_init__(self) -> None:
        super().__post_init__()
        accepted = inspect.signature(strategy_class(self.variant).__init__).parameters
        choices = [k for k in accepted if k not in _MANAGED and k not in ("self", "base_kwargs")]
        for key in self.strategy_options:
            if key not in choices:
                raise ConfigError(
                    f"Unknown strategy option {key!r} for avalanche:{self.variant}."
                    f"{did_you_mean(key, choices)} Accepted: {', '.join(choices)}."
                )


def strategy_class(name: str) -> type:
    """Look up an Avalanche supervised strategy by class name."""
    with warnings.catch_warnings():  # avalanche's optional solvers warn on import
        warnings.simplefilter("ignore")
        training = require_extra("avalanche.training", "avalanche", "an avalanche:* agent", package="avalanche-lib")
        from avalanche.training.templates import SupervisedTemplate

    known = sorted(
        n
        for n, obj in vars(training).items()
        if inspect.isclass(obj) and issubclass(obj, SupervisedTemplate) and obj is not SupervisedTemplate
    )
    if name not in known:
        raise ConfigError(f"Unknown Avalanche strategy {name!r}.{did_you_mean(name, known)} Known: {', '.join(known)}.")
    return getattr(training, name)


def _ewc_bytes(strategy: Any, item_bytes: int) -> dict[str, int]:
    (plugin,) = (p for p in strategy.plugins if type(p).__name__ == "EWCPlugin")
    return {
        "importances": tensor_bytes(d.data for per_exp in plugin.importances.values() for d in per_exp.values()),
        "saved_params": tensor_bytes(d.data for per_exp in plugin.saved_params.values() for d in per_exp.values()),
    }


def _lwf_bytes(strategy: Any, item_bytes: int) -> dict[str, int]:
    (plugin,) = (p for p in strategy.plugins if type(p).__name__ == "LwFPlugin")
    previous = plugin.lwf.prev_model
    return {"teacher": module_bytes(previous)} if previous is not None else {}


def _replay_bytes(strategy: Any, item_bytes: int) -> dict[str, int]:
    (plugin,) = (p for p in strategy.plugins if type(p).__name__ == "ReplayPlugin")
    return {"replay_items": len(plugin.storage_policy.buffer) * item_bytes}


COUNTED_STRATEGIES: dict[str, Callable[[Any, int], dict[str, int]]] = {
    "Naive": lambda strategy, item_bytes: {},
    "EWC": _ewc_bytes,
    "LwF": _lwf_bytes,
    "Replay": _replay_bytes,
}
"""Strategy name → what its kept state costs, ``(strategy, bytes of one stored item) -> {part: bytes}``."""


class AvalancheAgent:
    """An Avalanche strategy trained by Avalanche, evaluated by replaybench."""

    kinds = frozenset({"supervised"})
    Config = AvalancheConfig

    def __init__(self, *, stream: Stream, config: AvalancheConfig, seed: int, device: str = "cpu") -> None:
        from avalanche.training.plugins import EvaluationPlugin

        cls = strategy_class(config.variant)  # the config has checked the name and options
        self.config = config
        self.device = torch.device(device)
        # On the device from the start: the baseline is evaluated before Avalanche moves the model.
        self.network = build_network(config.architecture, stream.input_shape, config.hidden, stream.n_classes).to(
            self.device
        )
        optimizer = make_optimizer(
            config.optimizer, self.network.parameters(), config.lr, config.momentum, config.weight_decay
        )
        self.strategy = cls(
            model=self.network,
            optimizer=optimizer,
            criterion=torch.nn.CrossEntropyLoss(),
            train_mb_size=config.batch_size,
            train_epochs=config.epochs,
            eval_mb_size=4096,
            device=self.device,
            evaluator=EvaluationPlugin(loggers=[]),
            **config.strategy_options,
        )
        self.benchmark = to_avalanche_benchmark(stream)
        counter = COUNTED_STRATEGIES.get(config.variant)
        if counter is not None:  # an instance attribute: the hook exists only where the count is known
            example = stream.experiences[0].train_x[0]
            item_bytes = tensor_bytes([example]) + torch.empty((), dtype=torch.int64).element_size()
            self.state_bytes = functools.partial(counter, self.strategy, item_bytes)

    def learn(self, experience: Experience) -> dict[str, float]:
        with warnings.catch_warnings():  # avalanche 0.6 deprecates its own storage-policy calls
            warnings.simplefilter("ignore", DeprecationWarning)
            self.strategy.train(self.benchmark.train_stream[experience.index], num_workers=0)
        return {}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        model = self.strategy.model  # some strategies replace the model (e.g. GDumb re-inits)
        model.eval()
        return model(x.to(self.device))
