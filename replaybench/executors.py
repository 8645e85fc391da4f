"""Executors: where a sweep's runs execute.

A run is a pure function, :func:`run_one`, from a spec (``RunSpec.to_dict()``)
to an :class:`Outcome`. It never raises for a failing run: a raising agent, a
non-finite result or a timeout comes back as a failure with its traceback.
Every executor has the same interface, :meth:`Executor.run`, which yields one
outcome per task as each finishes:

- ``inline``: in this process, one run after another (tests, debugging);
- ``local``: a pool of spawned worker processes, one CPU (one torch thread)
  per run; a worker that hangs past the timeout or dies is replaced;
- ``ray``: tasks of one CPU each on a Ray cluster (``ray.init(address=...)``);
  without an address a local cluster is started for the sweep;
- ``slurm``: a submitit job array (``AutoExecutor``; it runs locally where
  there is no Slurm, and ``cluster="debug"`` runs in-process).

Timeouts are enforced twice: inside the run by ``SIGALRM`` (where the run owns
the main thread), and by the driver, which kills a run that overruns the
timeout by a grace period (a stuck C call does not see the signal).

The driver, not the executor, writes results, so a worker needs no shared
file system (see :mod:`replaybench.sweep`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from replaybench.errors import ConfigError, DivergenceError, ReplaybenchError, require_extra
from replaybench.params import Config, InstanceOf, Interval, Optional, param

EXECUTORS = ("inline", "local", "ray", "slurm")
EXECUTOR_EXTRAS = {"ray": ("ray", "ray", "the Ray executor"), "slurm": ("submitit", "slurm", "the Slurm executor")}
"""Executor → (module, extra, feature) for :func:`~replaybench.errors.require_extra`."""

GRACE_S = 10.0
"""How long past its timeout the driver waits before killing a run."""
STARTUP_GRACE_S = 300.0
"""How long a run's setup (a fresh interpreter importing torch, building the stream) may take
before its clock starts; Ray and Slurm, which do not report the start, add it to every deadline."""


def require_executor(name: str) -> None:
    """Fail on one line, before any work, if executor ``name`` needs a package that is not installed."""
    if name in EXECUTOR_EXTRAS:
        require_extra(*EXECUTOR_EXTRAS[name])


class RunTimeoutError(ReplaybenchError, TimeoutError):
    """A run exceeded the sweep's per-run timeout."""


@dataclass(frozen=True)
class Task:
    """One run to execute: its identity and its spec as a plain dict (picklable)."""

    run_id: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What came back from one run: a result dict, or a failure record."""

    run_id: str
    result: dict[str, Any] | None
    """``RunResult.to_dict()`` when the run succeeded."""
    failure: dict[str, Any] | None
    """``{"kind", "error", "traceback"}`` when it failed; kind is one of
    "raised", "nan", "timeout" or "crashed"."""
    seconds: float
    host: str

    @property
    def ok(self) -> bool:
        return self.result is not None


def failure_record(kind: str, error: str, tb: str = "") -> dict[str, str]:
    return {"kind": kind, "error": error.splitlines()[0] if error else kind, "traceback": tb}


# --- the pure run -------------------------------------------------------------
_STREAM_CACHE: dict[str, Any] = {}
_STREAM_CACHE_SIZE = 4


def stream_key(spec: Mapping[str, Any]) -> str:
    """What identifies the stream a spec (``RunSpec.to_dict()``) runs on: runs with equal keys share it."""
    return json.dumps(
        [spec["stream"], spec.get("stream_options", {}), spec.get("data_dir"), spec.get("download", False)],
        sort_keys=True,
        default=str,
    )


def _cached_stream(spec: Mapping[str, Any]) -> Any:
    """Build (once per worker) the stream a spec names; runs of a sweep share few streams."""
    from replaybench.runner import make_stream

    key = stream_key(spec)
    if key not in _STREAM_CACHE:
        if len(_STREAM_CACHE) >= _STREAM_CACHE_SIZE:
            _STREAM_CACHE.pop(next(iter(_STREAM_CACHE)))
        _STREAM_CACHE[key] = make_stream(
            spec["stream"],
            data_dir=spec.get("data_dir"),
            download=spec.get("download", False),
            **spec.get("stream_options", {}),
        )
    return _STREAM_CACHE[key]


def _non_finite(result: Any) -> str | None:
    """Name the first non-finite score in R or the baseline, or None.

    A metric may be undefined (NaN, e.g. forgetting after one experience); a
    score may not: it means the evaluator or the agent broke.
    """
    for i, row in enumerate(result.R):
        for j, v in enumerate(row):
            if not math.isfinite(v):
                return f"R[{i}][{j}] = {v}"
    for j, v in enumerate(result.baseline):
        if not math.isfinite(v):
            return f"baseline[{j}] = {v}"
    return None


WORKER_PRELOAD = ("torch", "torch._dynamo", "replaybench.runner")
"""What every run imports first: torch, what ``torch.optim`` imports on its first use
(``torch._dynamo``, seconds on a fresh interpreter) and the runner."""


def _warm_up_worker() -> None:
    """Import :data:`WORKER_PRELOAD` (a no-op where already imported), so that it is not charged
    to the first run's timeout."""
    import importlib

    for module in WORKER_PRELOAD:
        importlib.import_module(module)


def _raise_timeout(signum: int, frame: Any) -> None:
    raise RunTimeoutError("The run exceeded its timeout.")


def run_one(
    spec: Mapping[str, Any],
    timeout_s: float | None = None,
    threads: int | None = None,
    stream: Any = None,
    on_start: Callable[[], None] | None = None,
) -> Outcome:
    """Run one spec and return its outcome; a failing run is an outcome too.

    Args:
        spec: ``RunSpec.to_dict()``.
        timeout_s: Per-run limit, enforced with ``SIGALRM`` when this runs in a
            main thread (the driver enforces it too).
        threads: ``torch.set_num_threads`` for this run (None leaves it).
        stream: An already-built stream (inline runs); else one is built and cached.
        on_start: Called when setup is done and the run's clock starts.
    """
    from replaybench.results import run_id as identity
    from replaybench.runner import RunSpec, agent_class_and_config, run

    start = time.perf_counter()
    run_id = identity(spec)
    host = socket.gethostname()
    in_main_thread = threading.current_thread() is threading.main_thread()
    alarm_s = timeout_s if hasattr(signal, "setitimer") and in_main_thread else None
    previous = None
    try:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        # Building the stream and importing the agent happen once per worker: not charged to the limit.
        stream = stream if stream is not None else _cached_stream(spec)
        agent_class_and_config(spec["agent"], spec.get("agent_options", {}))
        _warm_up_worker()
        if on_start is not None:
            on_start()
        if alarm_s is not None:
            previous = signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, float(alarm_s))
        try:
            result = run(RunSpec(**spec), stream=stream)
        finally:
            if alarm_s is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        bad = _non_finite(result)
        if bad is not None:
            raise DivergenceError(f"The run produced a non-finite value: {bad}.")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        kind = (
            "timeout" if isinstance(exc, RunTimeoutError) else "nan" if isinstance(exc, DivergenceError) else "raised"
        )
        message = f"{type(exc).__name__}: {exc}"
        return Outcome(
            run_id, None, failure_record(kind, message, traceback.format_exc()), time.perf_counter() - start, host
        )
    return Outcome(run_id, result.to_dict(), None, time.perf_counter() - start, host)


# --- the interface --------------------------------------------------------------
class Executor(Protocol):
    """Runs tasks and yields one :class:`Outcome` per task, in completion order."""

    name: str

    def start(self, n_tasks: int) -> None:
        """Begin starting workers for ``n_tasks`` runs, so their start-up overlaps the driver's validation."""
        ...

    def run(self, tasks: Sequence[Task], *, streams: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
        """Run ``tasks``; ``streams`` (by :func:`stream_key`) are already built, for runs in this process."""
        ...

    def close(self) -> None: ...


def _with_id(outcome: Outcome, run_id: str) -> Outcome:
    return Outcome(run_id, outcome.result, outcome.failure, outcome.seconds, outcome.host)


class InlineExecutor:
    """Runs each task in this process, in order.

    Args:
        timeout_s: Per-run limit (``SIGALRM``; only in the main thread).
        streams: Already-built streams by :func:`stream_key`, reused.
    """

    name = "inline"

    def __init__(self, *, timeout_s: float | None = None, streams: Mapping[str, Any] | None = None) -> None:
        self.timeout_s = timeout_s
        self.streams = dict(streams or {})

    def start(self, n_tasks: int) -> None:
        pass

    def run(self, tasks: Sequence[Task], *, streams: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
        self.streams.update(streams or {})
        for task in tasks:
            stream = self.streams.get(stream_key(task.spec))
            yield _with_id(run_one(task.spec, self.timeout_s, None, stream), task.run_id)

    def close(self) -> None:
        pass


# --- local: a spawned process pool ---------------------------------------------------
def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the driver dies (kill -9 leaves no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(conn: Any, threads: int) -> None:
    """A local-pool worker: receive (spec, timeout), send back an Outcome, until told to stop."""
    _die_with_parent()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _warm_up_worker()  # before the first task arrives: the driver may still be validating
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        run_id, spec, timeout_s = message
        try:
            conn.send(_with_id(run_one(spec, timeout_s, threads, on_start=lambda: conn.send(STARTED)), run_id))
        except (BrokenPipeError, OSError):
            break
    # Every outcome has been sent: skip the interpreter's teardown of torch (about a second).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


STARTED = "started"
"""What a local worker sends when a run's setup is done and its clock starts."""


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: Task | None = None
    started: float = 0.0
    running: bool = False
    """Setup is done and the run's clock is running."""


class LocalExecutor:
    """A pool of ``workers`` spawned processes, one torch thread each.

    A worker is a fresh interpreter (the spawn start method: no forked torch
    or CUDA state). One that dies is reported as a crashed run and replaced;
    one that overruns the timeout by :data:`GRACE_S` is killed.
    """

    name = "local"

    def __init__(self, *, workers: int | None = None, timeout_s: float | None = None, threads: int = 1) -> None:
        self.workers = workers or default_workers()
        self.timeout_s = timeout_s
        self.threads = threads
        self._pool: list[_Worker] = []

    def _start(self) -> _Worker:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child, self.threads), daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._pool.append(worker)
        return worker

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self._pool.remove(worker)

    def start(self, n_tasks: int) -> None:
        """Spawn the workers now: each imports torch and the runner while the driver validates."""
        for _ in range(min(self.workers, n_tasks) - len(self._pool)):
            self._start()

    def run(self, tasks: Sequence[Task], *, streams: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
        from multiprocessing.connection import wait

        pending = deque(tasks)
        self.start(len(pending))
        idle = [w for w in self._pool if w.task is None]
        busy: list[_Worker] = []
        deadline_s = None if self.timeout_s is None else self.timeout_s + GRACE_S
        while pending or busy:
            while idle and pending:
                worker, next_task = idle.pop(), pending.popleft()
                worker.task, worker.started, worker.running = next_task, time.monotonic(), False
                worker.conn.send((next_task.run_id, dict(next_task.spec), self.timeout_s))
                busy.append(worker)
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for worker in list(busy):
                task, outcome = worker.task, None
                assert task is not None, "a busy worker holds a task"
                while outcome is None and worker.conn.poll():
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        break
                    if message == STARTED:
                        worker.started, worker.running = time.monotonic(), True
                    else:
                        outcome = message
                if outcome is not None:
                    worker.task = None
                    busy.remove(worker)
                    idle.append(worker)
                    yield outcome
                    continue
                elapsed = time.monotonic() - worker.started
                if not worker.process.is_alive():
                    failure = failure_record(
                        "crashed", f"The worker process died (exit code {worker.process.exitcode})."
                    )
                elif deadline_s is not None and worker.running and elapsed > deadline_s:
                    failure = failure_record(
                        "timeout", f"The run exceeded its timeout of {self.timeout_s:g} s; its worker was killed."
                    )
                elif deadline_s is not None and not worker.running and elapsed > STARTUP_GRACE_S:
                    failure = failure_record(
                        "timeout", f"The run's setup took over {STARTUP_GRACE_S:g} s; its worker was killed."
                    )
                else:
                    continue
                busy.remove(worker)
                self._stop(worker)
                if pending:
                    idle.append(self._start())
                yield Outcome(task.run_id, None, failure, elapsed, socket.gethostname())

    def close(self) -> None:
        """Stop idle workers cleanly; kill busy ones (an interrupted run is rerun on resume)."""
        for worker in self._pool:
            if worker.task is None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        for worker in list(self._pool):
            if worker.task is None:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            self._stop(worker)


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- ray ---------------------------------------------------------------------------
CANCEL_WAIT_S = 10.0
"""How long :meth:`RayExecutor.close` waits for the tasks it cancelled to end."""


class RayExecutor:
    """One-CPU Ray tasks, at most as many in flight as the cluster has CPUs.

    Closing it (the end of a sweep, Ctrl-C, SIGTERM) cancels every task still
    in flight with ``force=True``, so an interrupted driver leaves nothing
    running on a cluster it joined; then it disconnects, or shuts down the
    cluster it started.

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or another address for
            ``ray.init``; ``None`` starts a local cluster of ``workers`` CPUs
            (or joins the one this process already initialised).
        workers: CPUs of a cluster started here.
        timeout_s: Per-run limit; an overrunning task is cancelled with force.
    """

    name = "ray"

    def __init__(
        self, *, address: str | None = None, workers: int | None = None, timeout_s: float | None = None
    ) -> None:
        ray = require_extra(*EXECUTOR_EXTRAS["ray"])
        self._ray = ray
        self.timeout_s = timeout_s
        self._owns_cluster = False
        self._connected = False
        """This executor called ``ray.init``, so it disconnects on close."""
        self._in_flight: dict[Any, tuple[Task, float]] = {}
        self._sigterm: Any = None
        self._raised: BaseException | None = None
        """What the driver's SIGTERM handler raised; Ray's waits turn it into a plain KeyboardInterrupt."""
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers or default_workers()
                # The workers Ray starts with the cluster import these while it comes up,
                # rather than when the first run arrives.
                kwargs["_system_config"] = {"preload_python_modules": list(WORKER_PRELOAD)}
            in_main_thread = threading.current_thread() is threading.main_thread()
            sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
            try:
                ray.init(address=address, **kwargs)
                if sigterm is not None:
                    # ray.init installs a handler that exits with 1; the driver's own (stop, keep, 143) stays.
                    self._keep_handler(sigterm)
            except ConnectionError as exc:
                hint = ""
                if address not in (None, "auto") and not os.environ.get("RAY_AUTH_MODE"):
                    # Ray enables token authentication on `ray start` where ~/.ray/auth_token exists,
                    # and sends the token to an explicit address only when told to.
                    hint = " If the cluster uses token authentication, set RAY_AUTH_MODE=token."
                raise ConfigError(
                    f"Cannot reach the Ray cluster at {address!r}: {exc}".splitlines()[0] + hint
                ) from None
            except ValueError as exc:
                if address is None and "existing cluster" in str(exc):
                    # ray.init() without an address joins RAY_ADDRESS or the last `ray start` here.
                    raise ConfigError(
                        "A Ray cluster is already running here (RAY_ADDRESS or `ray start`); "
                        "join it with --address auto, or stop it to start one for this sweep."
                    ) from None
                raise
            self._owns_cluster = address is None
            self._connected = True
        # System failures (a lost node, a dead worker) are retried; a raising run is an outcome, not an error.
        self._remote = ray.remote(num_cpus=1, max_retries=2)(run_one)

    def _keep_handler(self, previous: Any) -> None:
        """Reinstall the SIGTERM handler ``previous``, remembering what it raises."""
        self._sigterm = previous
        if not callable(previous):
            signal.signal(signal.SIGTERM, previous)
            return

        def handler(signum: int, frame: Any) -> None:
            try:
                previous(signum, frame)
            except BaseException as exc:
                self._raised = exc
                raise

        signal.signal(signal.SIGTERM, handler)

    def _wait(self, refs: list[Any], **kwargs: Any) -> Any:
        """``ray.wait``, re-raising the driver's own exception (e.g. SIGTERM's) where Ray replaced it."""
        try:
            return self._ray.wait(refs, **kwargs)
        except KeyboardInterrupt as exc:
            raise (self._raised or exc) from None

    def start(self, n_tasks: int) -> None:
        pass  # the cluster came up in __init__

    def run(self, tasks: Sequence[Task], *, streams: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
        ray = self._ray
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending = deque(tasks)
        # On self, not local: close() cancels what is in flight when the driver is interrupted.
        in_flight = self._in_flight
        deadline_s = None if self.timeout_s is None else self.timeout_s + GRACE_S + STARTUP_GRACE_S
        while pending or in_flight:
            while pending and len(in_flight) < slots:
                task = pending.popleft()
                in_flight[self._remote.remote(dict(task.spec), self.timeout_s, 1)] = (task, time.monotonic())
            done, _ = self._wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                task, started = in_flight.pop(ref)
                try:
                    yield _with_id(ray.get(ref), task.run_id)
                except ray.exceptions.RayError as exc:
                    yield Outcome(
                        task.run_id,
                        None,
                        failure_record("crashed", f"{type(exc).__name__}: {exc}", str(exc)),
                        time.monotonic() - started,
                        "ray",
                    )
            if deadline_s is not None:
                for ref, (task, started) in list(in_flight.items()):
                    if time.monotonic() - started > deadline_s:
                        ray.cancel(ref, force=True)
                        del in_flight[ref]
                        yield Outcome(
                            task.run_id,
                            None,
                            failure_record(
                                "timeout",
                                f"The run exceeded its timeout of {self.timeout_s:g} s; its Ray task was cancelled.",
                            ),
                            time.monotonic() - started,
                            "ray",
                        )

    def close(self) -> None:
        """Cancel the tasks in flight (they are rerun on resume), then disconnect or stop the cluster."""
        ray = self._ray
        refs = list(self._in_flight)
        self._in_flight.clear()
        if refs and ray.is_initialized():
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            # Cancelling is asynchronous: wait until the owner (this driver) has delivered it.
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
        if self._connected:
            self._connected = False
            ray.shutdown()
        if self._sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None


# --- slurm (submitit) ----------------------------------------------------------------
SBATCH_OWNED = ("array", "output", "error", "open-mode", "signal", "job-name", "wrap")
"""sbatch options submitit sets for the job array itself; an extra ``#SBATCH`` line may not replace them."""
_MEM = re.compile(r"[1-9][0-9]*[KMGT]?B?", re.IGNORECASE)
_SBATCH_LINE = re.compile(r"(?:#SBATCH\s+)?(?:--)?([A-Za-z][A-Za-z0-9-]*)(?:=(.+))?")
LOST_AFTER_S = 10.0
"""How long a Slurm job may be out of ``squeue`` without a result before it counts as crashed."""


def _sbatch_option(line: str) -> tuple[str, Any]:
    """``"--constraint=a100"`` (or ``"constraint=a100"``) -> ``("constraint", "a100")``; ``True`` without a value."""
    match = _SBATCH_LINE.fullmatch(line.strip()) if isinstance(line, str) else None
    if match is None:
        raise ConfigError(
            f"The 'sbatch_lines' parameter of slurm must hold long sbatch options such as '--constraint=a100'. "
            f"Got {line!r} instead."
        )
    key, value = match.group(1), match.group(2)
    if key in SBATCH_OWNED:
        raise ConfigError(f"The sbatch option --{key} is set by the slurm executor itself; remove {line!r}.")
    return key, True if value is None else value


@dataclass(frozen=True)
class SlurmOptions(Config):
    """What each Slurm job asks for besides its one CPU: a sweep file's ``[slurm]`` table or ``--slurm-*``."""

    owner_name = "slurm"
    mem: str | None = param(None, Optional(InstanceOf(str)))
    """Memory per job, as sbatch's ``--mem`` ("4G", "500M")."""
    gpus_per_task: int | None = param(None, Optional(Interval(int, 1, None)))
    """GPUs per job (``--gpus-per-task``)."""
    account: str | None = param(None, Optional(InstanceOf(str)))
    """The account charged (``--account``)."""
    qos: str | None = param(None, Optional(InstanceOf(str)))
    """Quality of service (``--qos``)."""
    time_min: int | None = param(None, Optional(Interval(int, 1, None)))
    """The job's time limit in minutes (``--time``); default: the per-run timeout plus the allowances,
    else submitit's 5 minutes."""
    sbatch_lines: tuple = param((), InstanceOf(tuple))
    """Extra ``#SBATCH`` options, each a long option: ``"--constraint=a100"``, ``"--exclusive"``."""
    setup: tuple = param((), InstanceOf(tuple))
    """Shell lines run in the job before the run (``module load cuda``, ``source .venv/bin/activate``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mem is not None and not _MEM.fullmatch(self.mem):
            raise ConfigError(
                f"The 'mem' parameter of slurm must be a size such as '4G' or '500M'. Got {self.mem!r} instead."
            )
        for key in ("account", "qos"):
            value = getattr(self, key)
            if value is not None and (not value or value.split() != [value]):
                raise ConfigError(f"The {key!r} parameter of slurm must be one word. Got {value!r} instead.")
        for line in self.sbatch_lines:
            _sbatch_option(line)
        for line in self.setup:
            if not isinstance(line, str) or "\n" in line or not line.strip():
                raise ConfigError(
                    f"The 'setup' parameter of slurm must hold non-empty single lines. Got {line!r} instead."
                )

    def submitit_parameters(self) -> dict[str, Any]:
        """These options as ``AutoExecutor.update_parameters`` keywords."""
        params: dict[str, Any] = {}
        if self.mem is not None:
            params["slurm_mem"] = self.mem.upper()
        for key in ("gpus_per_task", "account", "qos"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        if self.time_min is not None:
            params["timeout_min"] = self.time_min
        if self.sbatch_lines:
            params["slurm_additional_parameters"] = dict(_sbatch_option(line) for line in self.sbatch_lines)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def _run_as_job(spec: Mapping[str, Any], timeout_s: float | None, threads: int, submitted_at: float) -> Outcome:
    """:func:`run_one` in a Slurm job, adding the time the job waited in the queue.

    ``queue_seconds`` (submission to this call, by the driver's and the node's
    wall clocks) goes to ``costs`` of a result, or to the failure record; the
    run's own seconds never include it.
    """
    queue_s = max(0.0, time.time() - submitted_at)
    outcome = run_one(spec, timeout_s, threads)
    if outcome.result is not None:
        result = {**outcome.result, "costs": {**outcome.result["costs"], "queue_seconds": queue_s}}
        return Outcome(outcome.run_id, result, None, outcome.seconds, outcome.host)
    failure = {**(outcome.failure or {}), "queue_seconds": queue_s}
    return Outcome(outcome.run_id, None, failure, outcome.seconds, outcome.host)


class SlurmExecutor:
    """A submitit job array: Slurm where ``srun`` exists, local subprocesses otherwise.

    Each job records how long it waited in the queue (``costs["queue_seconds"]``).
    On Slurm, a job that leaves the queue without a result (``scancel``, a lost
    node) is a crashed run; closing the executor (the end of a sweep, Ctrl-C,
    SIGTERM) cancels every job still queued or running, with one ``scancel``.

    Args:
        folder: Where submitit keeps its job files and logs.
        cluster: ``None`` (auto-detect), ``"slurm"``, ``"local"`` or ``"debug"``.
        workers: How many array jobs may run at once (``slurm_array_parallelism``).
        timeout_s: Per-run limit, passed on as the job's ``timeout_min`` too.
        partition: A Slurm partition, if the cluster needs one.
        options: Memory, GPUs, account, QOS, time limit, extra ``#SBATCH`` and setup lines.
    """

    name = "slurm"

    def __init__(
        self,
        *,
        folder: str | Path,
        cluster: str | None = None,
        workers: int | None = None,
        timeout_s: float | None = None,
        partition: str | None = None,
        options: SlurmOptions | None = None,
    ) -> None:
        submitit = require_extra(*EXECUTOR_EXTRAS["slurm"])
        self._submitit = submitit
        self.folder = Path(folder)
        self.timeout_s = timeout_s
        self._executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        self._waiting: dict[Any, Task] = {}
        params: dict[str, Any] = {
            "name": "replaybench-sweep",
            "cpus_per_task": 1,
            "slurm_array_parallelism": workers or 64,
        }
        if timeout_s is not None:
            params["timeout_min"] = max(1, math.ceil((timeout_s + GRACE_S + STARTUP_GRACE_S) / 60))
        if partition is not None:
            params["slurm_partition"] = partition
        params.update((options or SlurmOptions()).submitit_parameters())
        if self._executor.cluster != "slurm":  # the other clusters know none of the slurm_ keywords
            params = {k: v for k, v in params.items() if not k.startswith("slurm_") or k == "slurm_array_parallelism"}
        self._executor.update_parameters(**params)

    @property
    def on_slurm(self) -> bool:
        return bool(self._executor.cluster == "slurm")

    def start(self, n_tasks: int) -> None:
        pass  # Slurm starts jobs when they are submitted

    def run(self, tasks: Sequence[Task], *, streams: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
        if not tasks:
            return
        n = len(tasks)
        submitted_at = time.time()
        try:
            jobs = self._executor.map_array(
                _run_as_job, [dict(t.spec) for t in tasks], [self.timeout_s] * n, [1] * n, [submitted_at] * n
            )
        except self._submitit.core.utils.FailedJobError as exc:  # sbatch refused the script: bad options
            lines = [line for line in str(exc).splitlines() if line.strip()]
            error = next((line for line in reversed(lines) if "error" in line or "fatal" in line), "no reason given")
            raise ConfigError(
                f"Slurm refused the job array ({error.strip()}); its script is in {self.folder}."
            ) from None
        # On self: close() cancels what is still waiting when the driver is interrupted.
        waiting = self._waiting
        waiting.update(zip(jobs, tasks))
        started = time.monotonic()
        missing_since: dict[Any, float] = {}
        next_check = time.monotonic() + LOST_AFTER_S / 2
        while waiting:
            # A result file is the only sign of success we read: without accounting there is no sacct.
            done = [j for j in waiting if j.paths.result_pickle.exists() or (not self.on_slurm and j.done())]
            for job in done:
                task = waiting.pop(job)
                try:
                    yield _with_id(job.result(), task.run_id)
                except Exception as exc:
                    yield Outcome(
                        task.run_id,
                        None,
                        failure_record("crashed", f"{type(exc).__name__}: {exc}", traceback.format_exc()),
                        time.monotonic() - started,
                        f"job {job.job_id}",
                    )
            if self.on_slurm and waiting and time.monotonic() >= next_check:
                next_check = time.monotonic() + LOST_AFTER_S / 2
                queued = _squeue_ids()
                for job in list(waiting):
                    if queued is None or job.job_id in queued or job.paths.result_pickle.exists():
                        missing_since.pop(job, None)
                    elif time.monotonic() - missing_since.setdefault(job, time.monotonic()) >= LOST_AFTER_S:
                        task = waiting.pop(job)
                        yield Outcome(
                            task.run_id,
                            None,
                            failure_record(
                                "crashed",
                                f"The Slurm job {job.job_id} left the queue without a result "
                                f"(cancelled, killed or its node lost); its log: {job.paths.stderr}",
                            ),
                            time.monotonic() - started,
                            f"job {job.job_id}",
                        )
            if waiting:
                time.sleep(0.5)

    def close(self) -> None:
        """Cancel every job still queued or running (they are rerun on resume)."""
        jobs = [j for j in self._waiting if not j.paths.result_pickle.exists()]
        self._waiting.clear()
        if not jobs:
            return
        if self.on_slurm:
            import subprocess

            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["scancel", *sorted({j.job_id for j in jobs})], capture_output=True, timeout=60)
        else:
            for job in jobs:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)


def _squeue_ids() -> set[str] | None:
    """This user's Slurm jobs in the queue, array tasks one by one ("123_4"); None if squeue fails."""
    import subprocess

    try:
        out = subprocess.run(
            ["squeue", "--me", "--noheader", "--array", "--format=%i"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.split())


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    address: str | None = None,
    folder: str | Path | None = None,
    cluster: str | None = None,
    partition: str | None = None,
    threads: int | None = None,
    slurm: SlurmOptions | Mapping[str, Any] | None = None,
) -> Executor:
    """Build the executor called ``name`` (one of :data:`EXECUTORS`).

    ``threads`` is torch's intra-op threads per run in a local worker (default
    1); inline runs keep this process's setting. ``slurm`` (:class:`SlurmOptions`
    or its dict) is what each Slurm job asks for; the other executors ignore it.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"The 'workers' parameter must be an int in the range [1, inf). Got {workers!r} instead.")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"The 'timeout' parameter must be a float in the range (0, inf). Got {timeout_s!r} instead.")
    # Checked for every executor (bad input fails the same way), used by slurm only: a sweep file's
    # [slurm] table stays valid when the same sweep runs locally.
    options = slurm if isinstance(slurm, SlurmOptions) else SlurmOptions.from_dict(slurm or {})
    if name == "inline":
        return InlineExecutor(timeout_s=timeout_s)
    if name == "local":
        return LocalExecutor(workers=workers, timeout_s=timeout_s, threads=threads or 1)
    if name == "ray":
        return RayExecutor(address=address, workers=workers, timeout_s=timeout_s)
    if name == "slurm":
        if folder is None:
            raise ConfigError("The slurm executor needs a folder for submitit's job files.")
        return SlurmExecutor(
            folder=folder, cluster=cluster, workers=workers, timeout_s=timeout_s, partition=partition, options=options
        )
    raise ConfigError(
        f"The 'executor' parameter of sweep must be one of {', '.join(map(repr, EXECUTORS))}. Got {name!r} instead."
    )
