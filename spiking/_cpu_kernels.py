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

/* One LIF step over B x n neurons (theta: [n] or NULL; current, x: NULL for none). Each variant's
   inner loop is branch-free so that the compiler vectorises it. Stores each sample's spike count in
   counts (unless NULL) and returns the most spikes of one sample. */
#define LIF_LOOP(INPUT, THRESH)                                                  \
    for (int64_t j = 0; j < n; j++) {                                            \
        float vk = vb[j] * decay + rest_term;                                    \
        INPUT;                                                                   \
        float r = rb[j] - dt;                                                    \
        int spike = vk >= (THRESH);                                              \
        vb[j] = spike ? reset : vk;                                              \
        rb[j] = spike ? refractory : r;                                          \
        sb[j] = (uint8_t)spike;                                                  \
        spikes += spike;                                                         \
    }
#define LIF_INPUT float input = cb[j]; vk += rb[j] > 0.0f ? 0.0f : input

int lif_step(float *R v, float *R refrac, const float *R current, uint8_t *R s, float *R x,
             float *R theta, int64_t batch, int64_t n, float decay, float rest_term, float reset,
             float thresh, float refractory, float dt, float trace_decay, float theta_decay,
             float theta_plus, int theta_max, int learning, float *R scratch, int32_t *R counts) {
    int most = 0;
    if (theta && learning)
        for (int64_t j = 0; j < n; j++) theta[j] *= theta_decay;
    for (int64_t b = 0; b < batch; b++) {
        float *R vb = v + b * n, *R rb = refrac + b * n;
        uint8_t *R sb = s + b * n;
        const float *R cb = current ? current + b * n : 0;
        int spikes = 0;
        if (cb && theta) { LIF_LOOP(LIF_INPUT, thresh + theta[j]) }
        else if (cb) { LIF_LOOP(LIF_INPUT, thresh) }
        else if (theta) { LIF_LOOP((void)0, thresh + theta[j]) }
        else { LIF_LOOP((void)0, thresh) }
        if (spikes > most) most = spikes;
        if (counts) counts[b] = spikes;
        if (x) {
            float *R xb = x + b * n;
            for (int64_t j = 0; j < n; j++) {
                float decayed = xb[j] * trace_decay;
                xb[j] = sb[j] ? 1.0f : decayed;
            }
        }
    }
    if (theta && learning && theta_plus != 0.0f && most > 0) {
        /* theta += theta_plus * R_b(s) (sum, or any spike with theta_max): one rounding, as the tensor code */
        memset(scratch, 0, sizeof(float) * n);
        for (int64_t b = 0; b < batch; b++) {
            const uint8_t *R sb = s + b * n;
            for (int64_t j = 0; j < n; j++) scratch[j] += (float)sb[j];
        }
        if (theta_max)
            for (int64_t j = 0; j < n; j++) scratch[j] = scratch[j] > 0.0f ? 1.0f : 0.0f;
        for (int64_t j = 0; j < n; j++) theta[j] += theta_plus * scratch[j];
    }
    return most;
}

/* Keep one spike per sample: the floor(u[b] * count)-th of its spikes, in index order
   (counts: each sample's spikes, from lif_step). */
void keep_one_spike(uint8_t *R s, const float *R u, const int32_t *R counts, int64_t batch, int64_t n) {
    for (int64_t b = 0; b < batch; b++) {
        uint8_t *R sb = s + b * n;
        int64_t count = counts[b];
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
    for (int64_t k = 0; k < count; k++) {
        float decayed = x[k] * decay;
        x[k] = s[k] ? 1.0f : decayed;
    }
}

/* The spikes of s [B, n] (bytes 0 or 1) as events (i, b), sorted by neuron i, then sample b (a
   counting sort); starts has n + 1 entries: neuron i's events are starts[i] .. starts[i + 1] - 1.
   Spikes are found 8 bytes at a time. Returns the number of events. */
int64_t spike_events(const uint8_t *R s, int64_t batch, int64_t n, int32_t *R starts,
                     int32_t *R ev_b, int32_t *R raw_i, int32_t *R raw_b) {
    int64_t count = 0;
    memset(starts, 0, sizeof(int32_t) * (n + 1));
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *R sb = s + b * n;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t word;
            memcpy(&word, sb + i, 8);
            while (word) {  /* spikes are bytes 0/1: bit 8 * r marks byte r (little endian) */
                int64_t k = i + (__builtin_ctzll(word) >> 3);
                word &= word - 1;
                raw_i[count] = (int32_t)k; raw_b[count] = (int32_t)b; count++; starts[k + 1]++;
            }
        }
        for (; i < n; i++)
            if (sb[i]) { raw_i[count] = (int32_t)i; raw_b[count] = (int32_t)b; count++; starts[i + 1]++; }
    }
    for (int64_t i = 0; i < n; i++) starts[i + 1] += starts[i];
    /* raw events are in (b, i) order: a stable scatter by i keeps b ascending within each neuron */
    for (int64_t k = 0; k < count; k++) {
        int32_t i = raw_i[k];
        ev_b[starts[i]++] = raw_b[k];
    }
    for (int64_t i = n; i > 0; i--) starts[i] = starts[i - 1];
    starts[0] = 0;
    return count;
}

/* out[b, :] (+)= sum over i with s[b, i] of w[i, :], from the events of spike_events: each
   weight row is read once per step, for all the samples in which its input spiked. */
void dense_forward(const int32_t *R starts, const int32_t *R ev_b, const float *R w, float *R out,
                   int64_t batch, int64_t n, int64_t m, int accumulate) {
    if (!accumulate) memset(out, 0, sizeof(float) * batch * m);
    for (int64_t i = 0; i < n; i++) {
        const float *R row = w + i * m;
        for (int32_t k = starts[i]; k < starts[i + 1]; k++) {
            float *R o = out + (int64_t)ev_b[k] * m;
            for (int64_t j = 0; j < m; j++) o[j] += row[j];
        }
    }
}

/* w[i, :] += alpha * R_b(s[b, i] * post[b, :]) for the events of spike_events; reduction 0 = sum
   (event by event, in sample order), 1 = max. Only the non-zero entries of each post[b, :] are
   added (a postsynaptic trace is zero until its neuron first spikes; adding alpha * 0 would
   change nothing), so each event costs the support of post[b] instead of m. Without clamp it
   marks the touched rows for clamp_marked. With clamp (when this is the step's last change)
   each touched row is clamped to [lo, hi] at once and, if out is given, the next step's current
   out[b, :] = sum over the same events of the clamped rows is computed in the same pass: the
   input spikes of this step are the ones that drive the next step. scratch: m floats, left
   zero; support: batch * m ints; support_size: batch ints. */
void outer_rows(const int32_t *R starts, const int32_t *R ev_b, const float *R post, float *R w,
                int64_t n, int64_t m, float alpha, int reduction, uint8_t *R mark, float *R scratch,
                int clamp, float lo, float hi, float *R out, int64_t batch, int32_t *R support,
                int32_t *R support_size) {
    for (int64_t b = 0; b < batch; b++) {
        const float *R p = post + b * m;
        int32_t *R sup = support + b * m, size = 0;
        for (int64_t j = 0; j < m; j++) {
            sup[size] = (int32_t)j;
            size += p[j] != 0.0f;
        }
        support_size[b] = size;
    }
    if (out) memset(out, 0, sizeof(float) * batch * m);
    for (int64_t i = 0; i < n; i++) {
        int32_t first = starts[i], last = starts[i + 1];
        if (first == last) continue;
        float *R row = w + i * m;
        if (reduction == 0) {
            for (int32_t k = first; k < last; k++) {
                const float *R p = post + (int64_t)ev_b[k] * m;
                const int32_t *R sup = support + (int64_t)ev_b[k] * m;
                for (int32_t q = 0, size = support_size[ev_b[k]]; q < size; q++) row[sup[q]] += alpha * p[sup[q]];
            }
        } else {
            for (int32_t k = first; k < last; k++) {
                const float *R p = post + (int64_t)ev_b[k] * m;
                const int32_t *R sup = support + (int64_t)ev_b[k] * m;
                for (int32_t q = 0, size = support_size[ev_b[k]]; q < size; q++) {
                    int32_t j = sup[q];
                    scratch[j] = p[j] > scratch[j] ? p[j] : scratch[j];
                }
            }
            for (int32_t k = first; k < last; k++) {
                const int32_t *R sup = support + (int64_t)ev_b[k] * m;
                for (int32_t q = 0, size = support_size[ev_b[k]]; q < size; q++) {
                    int32_t j = sup[q];
                    if (scratch[j] == 0.0f) continue;  /* applied already */
                    row[j] += alpha * scratch[j];
                    scratch[j] = 0.0f;
                }
            }
        }
        if (!clamp) { mark[i] = 1; continue; }
        for (int64_t j = 0; j < m; j++) row[j] = row[j] < lo ? lo : (row[j] > hi ? hi : row[j]);
        if (!out) continue;
        for (int32_t k = first; k < last; k++) {
            float *R o = out + (int64_t)ev_b[k] * m;
            for (int64_t j = 0; j < m; j++) o[j] += row[j];
        }
    }
}

/* w[:, j] += alpha * R_b(pre[b, :] * s[b, j]) for the events of spike_events on s (postsynaptic
   spikes); marks touched columns. */
void outer_cols(const int32_t *R starts, const int32_t *R ev_b, const float *R pre, float *R w,
                int64_t n, int64_t m, float alpha, int reduction, uint8_t *R mark, float *R scratch) {
    for (int64_t j = 0; j < m; j++) {
        int32_t first = starts[j], last = starts[j + 1];
        if (first == last) continue;
        memcpy(scratch, pre + (int64_t)ev_b[first] * n, sizeof(float) * n);
        for (int32_t k = first + 1; k < last; k++) {
            const float *R p = pre + (int64_t)ev_b[k] * n;
            if (reduction == 0) for (int64_t i = 0; i < n; i++) scratch[i] += p[i];
            else for (int64_t i = 0; i < n; i++) scratch[i] = p[i] > scratch[i] ? p[i] : scratch[i];
        }
        /* a zero trace (an input silent so far) adds nothing: skip its strided entry */
        for (int64_t i = 0; i < n; i++)
            if (scratch[i] != 0.0f) w[i * m + j] += alpha * scratch[i];
        mark[j] = 1;
    }
}

/* out[b, j] (+)= -strength * (number of spikes of sample b other than j's) */
void inhibit_all(const uint8_t *R s, float *R out, int64_t batch, int64_t n, float strength,
                 int accumulate) {
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *R sb = s + b * n;
        float *R ob = out + b * n;
        int32_t total = 0;
        for (int64_t j = 0; j < n; j++) total += sb[j];
        if (!accumulate) {
            for (int64_t j = 0; j < n; j++) ob[j] = (float)(total - sb[j]) * -strength;
        } else if (total) {
            for (int64_t j = 0; j < n; j++) ob[j] += (float)(total - sb[j]) * -strength;
        }
    }
}

/* out (+)= strength * s */
void one_to_one(const uint8_t *R s, float *R out, int64_t count, float strength, int accumulate) {
    if (!accumulate) {
        for (int64_t k = 0; k < count; k++) out[k] = s[k] ? strength : 0.0f;
        return;
    }
    for (int64_t k = 0; k < count; k++) out[k] += s[k] ? strength : 0.0f;
}

/* counts += s (spike counts of a presentation) */
void count_spikes(float *R counts, const uint8_t *R s, int64_t count) {
    for (int64_t k = 0; k < count; k++) counts[k] += (float)s[k];
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
        for (int64_t i = 0; i < n; i++) {  /* strided: write only what leaves the bounds */
            float e = w[i * m + j];
            if (e < lo) w[i * m + j] = lo;
            else if (e > hi) w[i * m + j] = hi;
        }
        cols[j] = 0;
    }
}
"""

_P, _I64, _F, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "lif_step": (_INT, [_P, _P, _P, _P, _P, _P, _I64, _I64] + [_F] * 9 + [_INT, _INT, _P, _P]),
    "keep_one_spike": (None, [_P, _P, _P, _I64, _I64]),
    "trace_step": (None, [_P, _P, _I64, _F]),
    "spike_events": (_I64, [_P, _I64, _I64, _P, _P, _P, _P]),
    "dense_forward": (None, [_P, _P, _P, _P, _I64, _I64, _I64, _INT]),
    "outer_rows": (None, [_P, _P, _P, _P, _I64, _I64, _F, _INT, _P, _P, _INT, _F, _F, _P, _I64, _P, _P]),
    "outer_cols": (None, [_P, _P, _P, _P, _I64, _I64, _F, _INT, _P, _P]),
    "clamp_marked": (None, [_P, _I64, _I64, _P, _P, _F, _F]),
    "inhibit_all": (None, [_P, _P, _I64, _I64, _F, _INT]),
    "one_to_one": (None, [_P, _P, _I64, _F, _INT]),
    "count_spikes": (None, [_P, _P, _I64]),
}
# -fno-trapping-math lets the compiler if-convert (and so vectorise) the selects of the LIF and
# trace loops; it changes no result (no reassociation, unlike -ffast-math).
_FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC", "-std=c99"]


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
    subprocess.run([compiler, *flags, str(source), "-o", str(output)], check=True, capture_output=True, timeout=120)


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
