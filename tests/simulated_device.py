"""A stand-in accelerator on the CPU, for finding device bugs on a machine without a GPU.

``"cpu:0"`` is a valid torch device that computes exactly as ``"cpu"`` does
but compares unequal to it, so code that passes the agent's device along can
be told from code that falls back to the default (the host). Inside
:class:`SimulatedDevice`, a tensor made for ``"cpu:0"`` (a factory call
with ``device="cpu:0"``, ``.to("cpu:0")``, or anything computed from such a
tensor) is a :class:`OnDevice` tensor, and the rules CUDA enforces are
enforced on it:

- an operation may not mix a device tensor with a host tensor that has
  dimensions (0-dim host tensors are scalars and allowed as inputs, as on
  CUDA, but not as the tensor an in-place operation writes into);
  indexing and ``copy_`` across the two are allowed, as on CUDA;
- ``.numpy()`` of a device tensor is refused (CUDA needs ``.cpu()`` first);
- a CPU ``torch.Generator`` may not draw device tensors.

The numbers are the CPU's, bit for bit: only Python types change.
Not simulated: speed, memory, and kernels whose results differ on a GPU.

Example:
    >>> with SimulatedDevice():
    ...     x = torch.zeros(3, device=SIMULATED)
    ...     (x + 1).device
    device(type='cpu', index=0)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

SIMULATED = "cpu:0"
_DEVICE = torch.device(SIMULATED)

# Functions that may legally meet host and device tensors together on CUDA.
_CROSS_DEVICE_OK = frozenset({"__getitem__", "__setitem__", "copy_", "to", "cpu", "__repr__", "__format__", "__str__"})


def _in_place(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or (name.startswith("__i") and name != "__index__")


class DeviceMismatch(RuntimeError):
    """What CUDA would have raised (or silently cost) at this call."""


def _is_device(device: Any) -> bool:
    if not isinstance(device, (str, torch.device)):
        return False
    try:
        return torch.device(device) == _DEVICE
    except RuntimeError:
        return False


class _Generator(torch.Generator):
    """``torch.Generator`` that remembers whether it was made for the simulated device."""

    def __new__(cls, device: Any = "cpu") -> _Generator:
        generator = super().__new__(cls, device="cpu" if _is_device(device) else device)
        generator.on_device = _is_device(device)
        return generator


def _host_generator(kwargs: dict[str, Any]) -> bool:
    generator = kwargs.get("generator")
    return generator is not None and generator.device.type == "cpu" and not getattr(generator, "on_device", False)


class _Placed(torch.Tensor):
    """A tensor whose place (host or simulated device) is known."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func == torch.Tensor.device.__get__:
            return _DEVICE if isinstance(args[0], OnDevice) else torch.device("cpu")
        name = getattr(func, "__name__", str(func))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = any(isinstance(t, OnDevice) for t in tensors)
        if name in ("numpy", "__array__") and isinstance(args[0], OnDevice):
            raise DeviceMismatch(f"{name}() of a device tensor; call .cpu() first")
        private = name.startswith("_") and not name.startswith("__")  # torch internals, not the user's ops
        if on_device and not private and name not in _CROSS_DEVICE_OK:
            host = [t for t in tensors if isinstance(t, OnHost) and t.dim() > 0]
            if host:
                raise DeviceMismatch(f"{name}() of a device tensor with a host tensor of shape {tuple(host[0].shape)}")
            # CUDA moves a host scalar to the device as an input, never a result back into one.
            written = args[0] if args and _in_place(name) else kwargs.get("out")
            if isinstance(written, OnHost):
                raise DeviceMismatch(f"{name}() writes a device result into a host tensor")
            if _host_generator(kwargs):
                raise DeviceMismatch(f"{name}() of a device tensor with a CPU generator")
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if name == "cpu" or (name == "to" and _moves_to_host(args, kwargs)):
            return _placed(out, OnHost)
        if name == "to" and _moves_to_device(args, kwargs):
            return _placed(out, OnDevice)
        if private and name != "_make_subclass":
            return out
        return _placed(out, OnDevice if on_device else OnHost)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        if id(self) not in memo:
            with torch._C.DisableTorchFunctionSubclass():
                copied = self.detach().clone().as_subclass(type(self)).requires_grad_(self.requires_grad)
            if getattr(self, "_is_param", False):
                copied._is_param = True
            memo[id(self)] = copied
        return memo[id(self)]


class OnDevice(_Placed):
    """A tensor on the simulated device."""


class OnHost(_Placed):
    """A tensor known to be on the host: made without a device, or moved there."""


def _moves_to_host(args: Any, kwargs: dict[str, Any]) -> bool:
    for target in [*args[1:], kwargs.get("device")]:
        if isinstance(target, (str, torch.device)):
            return not _is_device(target)
        if isinstance(target, torch.Tensor):
            return isinstance(target, OnHost)
    return False


def _moves_to_device(args: Any, kwargs: dict[str, Any]) -> bool:
    for target in [*args[1:], kwargs.get("device")]:
        if isinstance(target, (str, torch.device)):
            return _is_device(target)
        if isinstance(target, torch.Tensor):
            return isinstance(target, OnDevice)
    return False


def _placed(out: Any, kind: type) -> Any:
    """``out`` with its plain tensors (and tensors of the other place) as ``kind``."""
    if isinstance(out, torch.Tensor) and type(out) in (torch.Tensor, OnDevice, OnHost):
        return out if type(out) is kind else out.as_subclass(kind)
    if isinstance(out, list):
        return [_placed(o, kind) for o in out]
    if type(out) is tuple:
        return tuple(_placed(o, kind) for o in out)
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # torch.return_types (max, topk, ...)
        return type(out)(tuple(_placed(o, kind) for o in out))
    return out


# Calls that make a tensor from nothing (or from Python/NumPy data): without a device, it is on the host.
_FACTORIES = frozenset(
    {
        "zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "range",
        "linspace", "logspace", "eye", "tensor", "as_tensor", "from_numpy", "asarray", "empty_strided",
        "normal", "scalar_tensor", "tril_indices", "triu_indices",
    }
)  # fmt: skip


_COUNT = [0]  # tensors made for, or moved to, the device in the current SimulatedDevice


def device_tensors() -> int:
    """How many tensors the current (or last) :class:`SimulatedDevice` saw made for, or moved to, the device."""
    return _COUNT[0]


class SimulatedDevice(TorchFunctionMode):
    """Marks what is made for :data:`SIMULATED` as device tensors and enforces CUDA's rules on them."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        plain_input = bool(args) and type(args[0]) is torch.Tensor
        if _is_device(kwargs.get("device")):
            if _host_generator(kwargs):
                raise DeviceMismatch(f"{name}(device={SIMULATED!r}) with a CPU generator")
            _COUNT[0] += 1
            return _placed(func(*args, **kwargs), OnDevice)
        out = func(*args, **kwargs)
        if plain_input and name == "to" and _moves_to_device(args, kwargs):
            _COUNT[0] += 1
            return _placed(out, OnDevice)
        if name in _FACTORIES and not any(isinstance(a, _Placed) for a in tree_flatten((args, kwargs))[0]):
            return _placed(out, OnHost)
        if plain_input and (name == "cpu" or (name == "to" and _moves_to_host(args, kwargs))):
            return _placed(out, OnHost)
        return out

    def __enter__(self) -> SimulatedDevice:
        _COUNT[0] = 0
        self._stack = contextlib.ExitStack()
        # Module.to() must replace parameters (not set .data) for the new ones to carry the type.
        previous = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        self._stack.callback(torch.__future__.set_overwrite_module_params_on_conversion, previous)
        generator = torch.Generator
        torch.Generator = _Generator  # type: ignore[misc]
        self._stack.callback(setattr, torch, "Generator", generator)
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._stack.close()


@contextlib.contextmanager
def simulated_device() -> Iterator[str]:
    """``with simulated_device() as device:`` build and run with ``device``."""
    with SimulatedDevice():
        yield SIMULATED


def on_host(stream: Any) -> Any:
    """``stream`` (a dataclass of experiences) with its experiences' tensors marked as host tensors."""

    def host(value: Any) -> Any:
        return value.as_subclass(OnHost) if type(value) is torch.Tensor else value

    experiences = tuple(
        dataclasses.replace(
            e,
            **{f: host(getattr(e, f)) for f in ("train_x", "train_y", "test_x", "test_y")},
            info={k: host(v) for k, v in e.info.items()},
        )
        for e in stream.experiences
    )
    return dataclasses.replace(stream, experiences=experiences)
