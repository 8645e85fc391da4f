"""The clock: layers, connections and monitors run step by step over a batch.

One step (BindsNET ``Network.run`` semantics, synchronous mode):

1. every connection computes its input from its source's spikes of the
   previous step;
2. layers update in insertion order (input layers take this step's spikes);
3. with learning on, each plastic connection's rule updates its weights;
4. monitors record.

With ``in_order=True`` steps 1 and 2 interleave: just before a layer updates,
its incoming connections compute from their sources' current spikes, which
are this step's for layers added earlier. A spike then crosses a feed-forward
stack in one step, as in the in-order update of Sleep Replay Consolidation
(:mod:`replaybench.spiking.src`); connections from the layer itself or from
later layers still carry the previous step's spikes.

After a presentation with learning on, connections with ``norm`` renormalise.

Example:
    >>> from replaybench.spiking.nodes import LIFNodes, LIFParams
    >>> from replaybench.spiking.topology import DenseConnection
    >>> net = Network(dt=1.0)
    >>> _ = net.add_layer("X", InputNodes(shape=(4,)))
    >>> _ = net.add_layer("Y", LIFNodes(shape=(2,), params=LIFParams()))
    >>> _ = net.add_connection("X", "Y", DenseConnection(
    ...     source=net.layers["X"], target=net.layers["Y"], weight=torch.ones(4, 2)))
    >>> net.run({"X": torch.ones(5, 3, 4, dtype=torch.bool)}, learning=False)
"""

from __future__ import annotations

import torch
from torch import nn

from replaybench.errors import ConfigError
from replaybench.params import InstanceOf, Interval, check_param
from replaybench.spiking import _cpu_kernels
from replaybench.spiking.nodes import InputNodes, Nodes
from replaybench.spiking.topology import Connection


def _currents(edges: list) -> dict[str, torch.Tensor]:
    """Each target's summed input from ``(source, connection, target name)`` edges' current spikes."""
    currents: dict[str, torch.Tensor] = {}
    for source, connection, target in edges:
        if target in currents:
            connection.compute_add_(source.s, currents[target])
        else:
            currents[target] = connection.compute(source.s)
    return currents


class SpikeCounter:
    """Counts each neuron's spikes over a presentation: ``counts [B, n]``."""

    _kernels = None

    def __init__(self, layer: Nodes) -> None:
        self.layer = layer
        self.counts = torch.zeros(0)

    def start(self, time_steps: int) -> None:
        self.counts = torch.zeros(self.layer.batch_size, self.layer.n, device=self.layer.x.device)
        self._kernels = _cpu_kernels.library() if self.counts.device.type == "cpu" else None

    def record(self, step: int) -> None:
        spikes = self.layer.s
        if self._kernels is not None and spikes.is_contiguous():
            self._kernels.count_spikes(self.counts.data_ptr(), spikes.data_ptr(), spikes.numel())
            return
        self.counts.add_(spikes.reshape(self.layer.batch_size, -1))


class SpikeRecorder:
    """Keeps every step's spikes: ``spikes [T, B, n]`` (bool), for firing orders."""

    def __init__(self, layer: Nodes) -> None:
        self.layer = layer
        self.spikes = torch.zeros(0, dtype=torch.bool)

    def start(self, time_steps: int) -> None:
        shape = (time_steps, self.layer.batch_size, self.layer.n)
        self.spikes = torch.zeros(shape, dtype=torch.bool, device=self.layer.x.device)

    def record(self, step: int) -> None:
        self.spikes[step] = self.layer.s.reshape(self.layer.batch_size, -1)


class VoltageRecorder:
    """Keeps every step's membrane potentials: ``voltages [T, B, n]``."""

    def __init__(self, layer: Nodes) -> None:
        if not hasattr(layer, "v"):
            raise ConfigError(f"VoltageRecorder needs a layer with voltages; {type(layer).__name__} has none.")
        self.layer = layer
        self.voltages = torch.zeros(0)

    def start(self, time_steps: int) -> None:
        shape = (time_steps, self.layer.batch_size, self.layer.n)
        self.voltages = torch.zeros(shape, device=self.layer.x.device)

    def record(self, step: int) -> None:
        self.voltages[step] = self.layer.v.reshape(self.layer.batch_size, -1)


class Network(nn.Module):
    """Layers, connections and monitors, advanced together by :meth:`run`.

    Args:
        dt: Step in ms; pushed into every layer.
        in_order: Compute each layer's input just before it updates (see the module docstring),
            instead of from every source's spikes of the previous step.
    """

    def __init__(self, *, dt: float = 1.0, in_order: bool = False) -> None:
        super().__init__()
        check_param("Network", "dt", dt, Interval(float, 0, None, closed="neither"))
        check_param("Network", "in_order", in_order, InstanceOf(bool))
        self.dt = float(dt)
        self.in_order = in_order
        self.layers = nn.ModuleDict()
        self.connections = nn.ModuleDict()
        self._edges: list[tuple[str, str, str]] = []  # (source, target, connection name)
        self.monitors: dict[str, SpikeCounter | SpikeRecorder | VoltageRecorder] = {}
        self.batch_size = 0

    def add_layer(self, name: str, nodes: Nodes) -> Nodes:
        """Add a population; layers update in the order they are added."""
        if not isinstance(nodes, Nodes):
            raise ConfigError(f"Layer {name!r} must be a Nodes population. Got {type(nodes).__name__}.")
        if name in self.layers:
            raise ConfigError(f"A layer named {name!r} already exists.")
        self.layers[name] = nodes
        self.batch_size = 0  # reconfigure on the next run
        return nodes

    def add_connection(self, source: str, target: str, connection: Connection) -> Connection:
        """Connect layer ``source`` to layer ``target``."""
        for role, name in (("source", source), ("target", target)):
            if name not in self.layers:
                raise ConfigError(f"Unknown {role} layer {name!r}. Known layers: {', '.join(self.layers)}.")
        if connection.source is not self.layers[source] or connection.target is not self.layers[target]:
            raise ConfigError(
                f"The connection {source}->{target} was built for other populations than the "
                f"network's layers {source!r} and {target!r}."
            )
        if isinstance(self.layers[target], InputNodes):
            raise ConfigError(f"Layer {target!r} is an input layer and cannot receive connections.")
        key = f"{source}->{target}"
        if key in self.connections:
            raise ConfigError(f"A connection {key} already exists.")
        self.connections[key] = connection
        self._edges.append((source, target, key))
        return connection

    def add_monitor(self, name: str, monitor) -> None:
        """Attach a monitor (``SpikeCounter``, ``SpikeRecorder``, ``VoltageRecorder``)."""
        if not any(monitor.layer is layer for layer in self.layers.values()):
            raise ConfigError(f"Monitor {name!r} watches a layer that is not in this network.")
        self.monitors[name] = monitor

    @property
    def plastic(self) -> list[Connection]:
        """Connections with a learning rule."""
        return [c for c in self.connections.values() if c.rule is not None]

    def reset_state(self) -> None:
        """Return every layer to rest (weights and thresholds kept)."""
        for layer in self.layers.values():
            layer.reset_state()

    def _configure(self, batch_size: int, learning: bool) -> None:
        # Only layers at either end of a plastic connection need spike traces, and only when learning.
        plastic = self.plastic if learning else []
        traced = {id(c.source) for c in plastic} | {id(c.target) for c in plastic}
        for layer in self.layers.values():
            layer.track_traces = id(layer) in traced
            layer.configure(dt=self.dt, batch_size=batch_size, learning=learning)
        for connection in self.connections.values():
            connection.configure(batch_size=batch_size)
        self.batch_size = batch_size

    def run(self, inputs: dict[str, torch.Tensor], *, learning: bool) -> None:
        """Present one batch of spike trains and advance the clock.

        Args:
            inputs: For each input layer, spikes ``[T, B, *shape]`` (bool).
            learning: Apply the connections' rules and adapt thresholds.
        """
        time_steps, batch_size = self._check_inputs(inputs)
        inputs = {name: spikes.bool().contiguous() for name, spikes in inputs.items()}
        self._configure(batch_size, learning)
        for monitor in self.monitors.values():
            monitor.start(time_steps)
        plastic = self.plastic if learning else []
        edges = [(self.layers[s], self.connections[c], t) for s, t, c in self._edges]
        order = list(self.layers.items())
        monitors = list(self.monitors.values())
        # In order, each layer's incoming edges are computed just before it updates.
        incoming = {name: [e for e in edges if e[2] == name] for name, _ in order} if self.in_order else {}
        for step in range(time_steps):
            currents = {} if self.in_order else _currents(edges)
            for name, layer in order:
                if name in inputs:
                    layer.set_spikes(inputs[name][step])
                elif self.in_order:
                    layer.step(_currents(incoming[name]).get(name))
                else:
                    layer.step(currents.get(name))
            for connection in plastic:
                connection.rule.update(connection)
            for monitor in monitors:
                monitor.record(step)
        for connection in plastic:
            connection.normalize_()

    def _check_inputs(self, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
        expected = {n for n, layer in self.layers.items() if isinstance(layer, InputNodes)}
        if set(inputs) != expected:
            raise ConfigError(
                f"Network.run needs spikes for exactly the input layers {sorted(expected)}. "
                f"Got {sorted(inputs)} instead."
            )
        sizes = set()
        for name, spikes in inputs.items():
            layer = self.layers[name]
            if spikes.dim() != 2 + len(layer.shape) or tuple(spikes.shape[2:]) != layer.shape:
                raise ConfigError(
                    f"Input for layer {name!r} must have shape [T, B, {', '.join(map(str, layer.shape))}]. "
                    f"Got {list(spikes.shape)} instead."
                )
            sizes.add(tuple(spikes.shape[:2]))
        if len(sizes) != 1:
            raise ConfigError(f"All inputs must share T and B. Got {sorted(sizes)} instead.")
        ((time_steps, batch_size),) = sizes
        if time_steps < 1 or batch_size < 1:
            raise ConfigError(f"Inputs need T >= 1 and B >= 1. Got T={time_steps}, B={batch_size}.")
        return time_steps, batch_size
