"""Fixed-step integrators for a pair of coupled states (v, v_d).

Both states advance together in one step. (The reference code advances
``v`` with ``v_d`` frozen and then ``v_d`` with the new ``v``, a splitting
that makes its RK4 first order in the coupling; a joint step keeps RK4's
fourth order, which ``tests/test_gsemm.py`` checks.)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

VectorField = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(v, v_d) -> (dv/dt, dv_d/dt)``."""


def euler_step(field: VectorField, v: Tensor, v_d: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """One forward-Euler step."""
    dv, dv_d = field(v, v_d)
    return v + dt * dv, v_d + dt * dv_d


def rk4_step(field: VectorField, v: Tensor, v_d: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """One classical fourth-order Runge-Kutta step."""
    k1v, k1d = field(v, v_d)
    k2v, k2d = field(v + 0.5 * dt * k1v, v_d + 0.5 * dt * k1d)
    k3v, k3d = field(v + 0.5 * dt * k2v, v_d + 0.5 * dt * k2d)
    k4v, k4d = field(v + dt * k3v, v_d + dt * k3d)
    sixth = dt / 6.0
    return (
        v + sixth * (k1v + 2 * k2v + 2 * k3v + k4v),
        v_d + sixth * (k1d + 2 * k2d + 2 * k3d + k4d),
    )


STEPPERS = {"euler": euler_step, "rk4": rk4_step}
