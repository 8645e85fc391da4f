"""Fused CPU kernels for the simulator's hot loop, compiled on first use.

On the CPU a simulation step is dozens of tiny tensor operations, each
costing microseconds of dispatch, and BindsNET-style STDP touches every
weight every step. These kernels fuse a population's update into one pass and
make the dense connection event-driven: the input current, the batch-reduced
STDP outer products and the clamp touch only the rows of presynaptic neurons
that spiked and the columns of postsynaptic ones. They compute the same
equations as the tensor code in ``nodes.py``/``learning.py`` (the tests check
them against it); the tensor code remains the path on CUDA and wherever no C
compiler exists. ``REPLAYBENCH_SPIKING_KERNELS=0`` turns them off.

The library is built with the system C compiler into
``$XDG_CACHE_HOME/replaybench`` (keyed by the source's hash) and loaded with
ctypes; there is no Python extension module and no torch header.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* One LIF step over count = B * n neurons (theta: [n] or NULL, current: NULL for none).
   Returns the largest number of spikes of one sample. */
int lif_step(float *v, float *refrac, const float *current, uint8_t *s, float *x, float *theta,
             int64_t batch, int64_t n, float decay, float rest, float reset, float thresh,
             float refractory, float dt, float trace_decay, float theta_decay, float theta_plus,
             int learning) {
    float rest_term = rest * (1.0f - decay);
    int most = 0;
    if (theta && learning)
        for (int64_t j = 0; j < n; j++) theta[j] *= theta_decay;
    for (int64_t b = 0; b < batch; b++) {
        int spikes = 0;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = b * n + j;
            float vk = v[k] * decay + rest_term;
            if (current && !(refrac[k] > 0.0f)) vk += current[k];
            float rk = refrac[k] - dt;
            float th = theta ? thresh + theta[j] : thresh;
            uint8_t sk = vk >= th;
            if (sk) { rk = refractory; vk = reset; spikes++; }
            v[k] = vk; refrac[k] = rk; s[k] = sk;
            if (x) x[k] = sk ? 1.0f : x[k] * trace_decay;
        }
        if (spikes > most) most = spikes;
    }
    if (theta && learning && theta_plus != 0.0f)
        for (int64_t j = 0; j < n; j++) {
            int64_t fired = 0;
            for (int64_t b = 0; b < batch; b++) fired += s[b * n + j];
            if (fired) theta[j] += theta_plus * (float)fired;
        }
    return most;
}

void trace_step(float *x, const uint8_t *s, int64_t count, float decay) {
    for (int64_t k = 0; k < count; k++) x[k] = s[k] ? 1.0f : x[k] * decay;
}

/* out[b, :] = sum over i with s[b, i] of w[i, :] */
void dense_forward(const uint8_t *s, const float *w, float *out, int64_t batch, int64_t n, int64_t m) {
    memset(out, 0, sizeof(float) * batch * m);
    for (int64_t b = 0; b < batch; b++) {
        float *o = out + b * m;
        const uint8_t *sb = s + b * n;
        for (int64_t i = 0; i < n; i++) {
            if (!sb[i]) continue;
            const float *row = w + i * m;
            for (int64_t j = 0; j < m; j++) o[j] += row[j];
        }
    }
}

/* w[i, :] += alpha * R_b(s[b, i] * post[b, :]); reduction 0 = sum, 1 = max. Marks touched rows. */
void outer_rows(const uint8_t *s, const float *post, float *w, int64_t batch, int64_t n, int64_t m,
                float alpha, int reduction, uint8_t *mark, float *scratch) {
    if (reduction == 0) {
        for (int64_t b = 0; b < batch; b++) {
            const float *p = post + b * m;
            for (int64_t i = 0; i < n; i++) {
                if (!s[b * n + i]) continue;
                float *row = w + i * m;
                for (int64_t j = 0; j < m; j++) row[j] += alpha * p[j];
                mark[i] = 1;
            }
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int found = 0;
        for (int64_t b = 0; b < batch; b++) {
            if (!s[b * n + i]) continue;
            const float *p = post + b * m;
            if (!found) { memcpy(scratch, p, sizeof(float) * m); found = 1; }
            else for (int64_t j = 0; j < m; j++) if (p[j] > scratch[j]) scratch[j] = p[j];
        }
        if (!found) continue;
        float *row = w + i * m;
        for (int64_t j = 0; j < m; j++) row[j] += alpha * scratch[j];
        mark[i] = 1;
    }
}

/* w[:, j] += alpha * R_b(pre[b, :] * s[b, j]); marks touched columns. */
void outer_cols(const float *pre, const uint8_t *s, float *w, int64_t batch, int64_t n, int64_t m,
                float alpha, int reduction, uint8_t *mark, float *scratch) {
    for (int64_t j = 0; j < m; j++) {
        int found = 0;
        for (int64_t b = 0; b < batch; b++) {
            if (!s[b * m + j]) continue;
            const float *p = pre + b * n;
            if (!found) { memcpy(scratch, p, sizeof(float) * n); found = 1; }
            else if (reduction == 0) for (int64_t i = 0; i < n; i++) scratch[i] += p[i];
            else for (int64_t i = 0; i < n; i++) if (p[i] > scratch[i]) scratch[i] = p[i];
        }
        if (!found) continue;
        for (int64_t i = 0; i < n; i++) w[i * m + j] += alpha * scratch[i];
        mark[j] = 1;
    }
}

/* out[b, j] = -strength * (number of spikes of sample b other than j's) */
void inhibit_all(const uint8_t *s, float *out, int64_t batch, int64_t n, float strength) {
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *sb = s + b * n;
        float total = 0.0f;
        for (int64_t j = 0; j < n; j++) total += sb[j];
        for (int64_t j = 0; j < n; j++) out[b * n + j] = (total - sb[j]) * -strength;
    }
}

void one_to_one(const uint8_t *s, float *out, int64_t count, float strength) {
    for (int64_t k = 0; k < count; k++) out[k] = s[k] ? strength : 0.0f;
}

/* Clamp the marked rows and columns of w to [lo, hi] and clear the marks. */
void clamp_marked(float *w, int64_t n, int64_t m, uint8_t *rows, uint8_t *cols, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        if (!rows[i]) continue;
        float *row = w + i * m;
        for (int64_t j = 0; j < m; j++) row[j] = row[j] < lo ? lo : (row[j] > hi ? hi : row[j]);
        rows[i] = 0;
    }
    for (int64_t j = 0; j < m; j++) {
        if (!cols[j]) continue;
        for (int64_t i = 0; i < n; i++) {
            float *e = w + i * m + j;
            *e = *e < lo ? lo : (*e > hi ? hi : *e);
        }
        cols[j] = 0;
    }
}
"""

_P, _I64, _F, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "lif_step": (_INT, [_P, _P, _P, _P, _P, _P, _I64, _I64] + [_F] * 9 + [_INT]),
    "trace_step": (None, [_P, _P, _I64, _F]),
    "dense_forward": (None, [_P, _P, _P, _I64, _I64, _I64]),
    "outer_rows": (None, [_P, _P, _P, _I64, _I64, _I64, _F, _INT, _P, _P]),
    "outer_cols": (None, [_P, _P, _P, _I64, _I64, _I64, _F, _INT, _P, _P]),
    "clamp_marked": (None, [_P, _I64, _I64, _P, _P, _F, _F]),
    "inhibit_all": (None, [_P, _P, _I64, _I64, _F]),
    "one_to_one": (None, [_P, _P, _I64, _F]),
}


def _build() -> ctypes.CDLL | None:
    if os.environ.get("REPLAYBENCH_SPIKING_KERNELS", "1") == "0" or sys.platform == "win32":
        return None
    flags = ["-O3", "-shared", "-fPIC", "-std=c99"]
    digest = hashlib.sha256((_SOURCE + " ".join(flags)).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "replaybench"
    library = cache / f"spiking_kernels_{digest}.so"
    if not library.exists():
        compiler = os.environ.get("CC", "cc")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                source = Path(tmp) / "kernels.c"
                source.write_text(_SOURCE)
                built = Path(tmp) / library.name
                subprocess.run([compiler, *flags, str(source), "-o", str(built)], check=True,
                               capture_output=True, timeout=120)
                os.replace(built, library)  # atomic: concurrent builders agree
        except (OSError, subprocess.SubprocessError) as error:
            warnings.warn(f"spiking: no fused CPU kernels ({error}); using the tensor path", stacklevel=3)
            return None
    lib = ctypes.CDLL(str(library))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_LIB: list = []


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` where they are unavailable or disabled."""
    if not _LIB:
        _LIB.append(_build())
    return _LIB[0]


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can run on these tensors (CPU, float32/bool, contiguous)."""
    if library() is None:
        return False
    for t in tensors:
        if t.device.type != "cpu" or not t.is_contiguous() or t.dtype not in (torch.float32, torch.bool):
            return False
    return True


def ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()
