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
``$XDG_CACHE_HOME/replaybench`` (keyed by the source's hash and the CPU's
features) and loaded with ctypes; there is no extension module, no torch header.
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

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#define R restrict

/* One LIF step over B x n neurons (theta: [n] or NULL; current, x: NULL for none). The loops
   are branch-free so that the compiler vectorises them. Returns the most spikes of one sample. */
int lif_step(float *R v, float *R refrac, const float *R current, uint8_t *R s, float *R x,
             float *R theta, int64_t batch, int64_t n, float decay, float rest_term, float reset,
             float thresh, float refractory, float dt, float trace_decay, float theta_decay,
             float theta_plus, int learning, float *R scratch) {
    int most = 0;
    if (theta && learning)
        for (int64_t j = 0; j < n; j++) theta[j] *= theta_decay;
    for (int64_t b = 0; b < batch; b++) {
        float *R vb = v + b * n, *R rb = refrac + b * n;
        uint8_t *R sb = s + b * n;
        const float *R cb = current ? current + b * n : 0;
        for (int64_t j = 0; j < n; j++) {
            float vk = vb[j] * decay + rest_term;
            if (cb) vk += rb[j] > 0.0f ? 0.0f : cb[j];
            float th = theta ? thresh + theta[j] : thresh;
            int spike = vk >= th;
            vb[j] = spike ? reset : vk;
            rb[j] = spike ? refractory : rb[j] - dt;
            sb[j] = (uint8_t)spike;
        }
        int spikes = 0;
        for (int64_t j = 0; j < n; j++) spikes += sb[j];
        if (spikes > most) most = spikes;
        if (x) {
            float *R xb = x + b * n;
            for (int64_t j = 0; j < n; j++) xb[j] = sb[j] ? 1.0f : xb[j] * trace_decay;
        }
    }
    if (theta && learning && theta_plus != 0.0f && most > 0) {
        /* theta += theta_plus * (spikes summed over the batch): one rounding, as the tensor code */
        memset(scratch, 0, sizeof(float) * n);
        for (int64_t b = 0; b < batch; b++) {
            const uint8_t *R sb = s + b * n;
            for (int64_t j = 0; j < n; j++) scratch[j] += (float)sb[j];
        }
        for (int64_t j = 0; j < n; j++) theta[j] += theta_plus * scratch[j];
    }
    return most;
}

/* Keep one spike per sample: the floor(u[b] * count)-th of its spikes, in index order. */
void keep_one_spike(uint8_t *R s, const float *R u, int64_t batch, int64_t n) {
    for (int64_t b = 0; b < batch; b++) {
        uint8_t *R sb = s + b * n;
        int64_t count = 0;
        for (int64_t j = 0; j < n; j++) count += sb[j];
        if (count < 2) continue;
        int64_t keep = (int64_t)(u[b] * (float)count);
        if (keep > count - 1) keep = count - 1;
        for (int64_t j = 0, seen = 0; j < n; j++) {
            if (!sb[j]) continue;
            sb[j] = seen == keep;
            seen++;
        }
    }
}

void trace_step(float *R x, const uint8_t *R s, int64_t count, float decay) {
    for (int64_t k = 0; k < count; k++) x[k] = s[k] ? 1.0f : x[k] * decay;
}

/* out[b, :] = sum over i with s[b, i] of w[i, :] */
void dense_forward(const uint8_t *R s, const float *R w, float *R out, int64_t batch, int64_t n,
                   int64_t m) {
    memset(out, 0, sizeof(float) * batch * m);
    for (int64_t b = 0; b < batch; b++) {
        float *R o = out + b * m;
        const uint8_t *R sb = s + b * n;
        for (int64_t i = 0; i < n; i++) {
            if (!sb[i]) continue;
            const float *R row = w + i * m;
            for (int64_t j = 0; j < m; j++) o[j] += row[j];
        }
    }
}

/* w[i, :] += alpha * R_b(s[b, i] * post[b, :]); reduction 0 = sum, 1 = max. Marks touched rows.
   Sum adds event by event (measured faster); max goes row by row through a scratch row. */
void outer_rows(const uint8_t *R s, const float *R post, float *R w, int64_t batch, int64_t n,
                int64_t m, float alpha, int reduction, uint8_t *R mark, float *R scratch) {
    if (reduction == 0) {
        for (int64_t b = 0; b < batch; b++) {
            const float *R p = post + b * m;
            const uint8_t *R sb = s + b * n;
            for (int64_t i = 0; i < n; i++) {
                if (!sb[i]) continue;
                float *R row = w + i * m;
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
            const float *R p = post + b * m;
            if (!found) { memcpy(scratch, p, sizeof(float) * m); found = 1; }
            else if (reduction == 0) for (int64_t j = 0; j < m; j++) scratch[j] += p[j];
            else for (int64_t j = 0; j < m; j++) scratch[j] = p[j] > scratch[j] ? p[j] : scratch[j];
        }
        if (!found) continue;
        float *R row = w + i * m;
        for (int64_t j = 0; j < m; j++) row[j] += alpha * scratch[j];
        mark[i] = 1;
    }
}

/* w[:, j] += alpha * R_b(pre[b, :] * s[b, j]); marks touched columns. */
void outer_cols(const float *R pre, const uint8_t *R s, float *R w, int64_t batch, int64_t n,
                int64_t m, float alpha, int reduction, uint8_t *R mark, float *R scratch) {
    for (int64_t j = 0; j < m; j++) {
        int found = 0;
        for (int64_t b = 0; b < batch; b++) {
            if (!s[b * m + j]) continue;
            const float *R p = pre + b * n;
            if (!found) { memcpy(scratch, p, sizeof(float) * n); found = 1; }
            else if (reduction == 0) for (int64_t i = 0; i < n; i++) scratch[i] += p[i];
            else for (int64_t i = 0; i < n; i++) scratch[i] = p[i] > scratch[i] ? p[i] : scratch[i];
        }
        if (!found) continue;
        for (int64_t i = 0; i < n; i++) w[i * m + j] += alpha * scratch[i];
        mark[j] = 1;
    }
}

/* out[b, j] = -strength * (number of spikes of sample b other than j's) */
void inhibit_all(const uint8_t *R s, float *R out, int64_t batch, int64_t n, float strength) {
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *R sb = s + b * n;
        float total = 0.0f;
        for (int64_t j = 0; j < n; j++) total += (float)sb[j];
        for (int64_t j = 0; j < n; j++) out[b * n + j] = (total - (float)sb[j]) * -strength;
    }
}

void one_to_one(const uint8_t *R s, float *R out, int64_t count, float strength) {
    for (int64_t k = 0; k < count; k++) out[k] = s[k] ? strength : 0.0f;
}

/* Clamp the marked rows and columns of w to [lo, hi] and clear the marks. */
void clamp_marked(float *R w, int64_t n, int64_t m, uint8_t *R rows, uint8_t *R cols, float lo,
                  float hi) {
    for (int64_t i = 0; i < n; i++) {
        if (!rows[i]) continue;
        float *R row = w + i * m;
        for (int64_t j = 0; j < m; j++) row[j] = row[j] < lo ? lo : (row[j] > hi ? hi : row[j]);
        rows[i] = 0;
    }
    for (int64_t j = 0; j < m; j++) {
        if (!cols[j]) continue;
        for (int64_t i = 0; i < n; i++) {
            float e = w[i * m + j];
            w[i * m + j] = e < lo ? lo : (e > hi ? hi : e);
        }
        cols[j] = 0;
    }
}
"""

_P, _I64, _F, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "lif_step": (_INT, [_P, _P, _P, _P, _P, _P, _I64, _I64] + [_F] * 9 + [_INT, _P]),
    "keep_one_spike": (None, [_P, _P, _I64, _I64]),
    "trace_step": (None, [_P, _P, _I64, _F]),
    "dense_forward": (None, [_P, _P, _P, _I64, _I64, _I64]),
    "outer_rows": (None, [_P, _P, _P, _I64, _I64, _I64, _F, _INT, _P, _P]),
    "outer_cols": (None, [_P, _P, _P, _I64, _I64, _I64, _F, _INT, _P, _P]),
    "clamp_marked": (None, [_P, _I64, _I64, _P, _P, _F, _F]),
    "inhibit_all": (None, [_P, _P, _I64, _I64, _F]),
    "one_to_one": (None, [_P, _P, _I64, _F]),
}
_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c99"]


def _build() -> ctypes.CDLL | None:
    if os.environ.get("REPLAYBENCH_SPIKING_KERNELS", "1") == "0" or sys.platform == "win32":
        return None
    # -march=native code runs only on this kind of CPU: key the cache by its features too.
    digest = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + _cpu_features()).encode()).hexdigest()[:16]
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
                try:
                    _compile(compiler, _FLAGS, source, built)
                except subprocess.CalledProcessError:  # a compiler without -march=native
                    _compile(compiler, [f for f in _FLAGS if f != "-march=native"], source, built)
                os.replace(built, library)  # atomic: concurrent builders agree
        except (OSError, subprocess.SubprocessError) as error:
            warnings.warn(f"spiking: no fused CPU kernels ({error}); using the tensor path", stacklevel=3)
            return None
    lib = ctypes.CDLL(str(library))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _compile(compiler: str, flags: list[str], source: Path, output: Path) -> None:
    subprocess.run([compiler, *flags, str(source), "-o", str(output)], check=True, capture_output=True,
                   timeout=120)


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


_LIB: list = []


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` where they are unavailable or disabled."""
    if not _LIB:
        _LIB.append(_build())
    return _LIB[0]
