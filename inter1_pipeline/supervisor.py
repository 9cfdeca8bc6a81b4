"""Supervised processes for ``inter1-pipeline demo`` and ``run``.

A :class:`Unit` is one thing the :class:`Supervisor` keeps running: a child process
described by a :class:`ProcessSpec` (:class:`ChildProcess`), or the local Kafka broker
(:class:`inter1_pipeline.pipeline_stack.BrokerUnit`). Per unit the supervisor

* launches it and waits for its readiness check (an HTTP endpoint such as a worker's
  ``/readyz``, a port, or nothing) within ``ready_timeout_s``;
* when it exits, logs the exit code and restarts it after an exponential backoff capped at
  :attr:`RestartPolicy.max_backoff_s` (reset once a run lasted ``stable_after_s``); an exit
  code that says the configuration is wrong (2, 78) is not retried, nor is a unit past
  ``max_restarts``: :attr:`Supervisor.failure` is set instead;
* stops it in reverse tier order, units of one tier together: SIGTERM, then SIGKILL to its
  whole process group after the unit's grace period.

Children run in their own session (Ctrl-C in the terminal reaches only the supervisor,
which stops them in order) with ``PR_SET_PDEATHSIG`` on Linux, so they get SIGTERM even
if the supervisor itself is killed. Each child's output goes to ``<log_dir>/<name>.log``
(appended, one header line per launch).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import httpx

from deploy.processes import tail_lines
from runtime.errors import ExitCode, PipelineError
from runtime.logs import get_logger

__all__ = [
    "ChildProcess",
    "Exit",
    "ProcessSpec",
    "ReadyCheck",
    "RestartPolicy",
    "Supervisor",
    "SupervisorError",
    "Unit",
    "UnitStatus",
    "http_ready",
    "port_ready",
    "run_until_signal",
]

T = TypeVar("T")

ReadyCheck = Callable[[], Awaitable[bool]]
"""True once the unit serves (called repeatedly while it starts)."""

State = Literal["starting", "ready", "backoff", "failed", "stopping", "stopped"]
_POLL_S = 0.2
_TAIL = 12


class SupervisorError(PipelineError):
    """A unit could not be started, kept running or stopped."""


@dataclass(frozen=True)
class Exit:
    """How a unit ended: ``code`` as ``subprocess`` reports it (negative: killed by that
    signal), None when unknown (a process that was not our child)."""

    code: int | None

    def describe(self) -> str:
        """``exit code 1``, ``killed by SIGKILL (exit code -9)`` or ``exit code unknown``."""
        if self.code is None:
            return "exit code unknown"
        if self.code < 0:
            try:
                name = signal.Signals(-self.code).name
            except ValueError:
                name = f"signal {-self.code}"
            return f"killed by {name} (exit code {self.code})"
        return f"exit code {self.code}"


@dataclass(frozen=True)
class RestartPolicy:
    """When and how fast a unit that exited is started again."""

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    """A run at least this long resets the backoff."""
    max_restarts: int | None = None
    """Consecutive restarts allowed (None: no limit)."""
    permanent_exit_codes: frozenset[int] = frozenset({ExitCode.USAGE, ExitCode.CONFIG})
    """Exit codes that say restarting cannot help (bad usage or configuration)."""

    def backoff_s(self, failures: int) -> float:
        """Delay before restart number ``failures`` (1-based) of a streak."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, failures - 1)))


class Unit(ABC):
    """Something the supervisor starts, watches, restarts and stops."""

    name: str
    tier: int = 0
    """Start order: lower tiers first; stop order: higher tiers first."""
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 15.0
    log_path: Path | None = None

    @abstractmethod
    async def launch(self) -> None:
        """Start it (returns once it runs; readiness is checked with :meth:`ready`)."""

    @property
    @abstractmethod
    def pid(self) -> int | None:
        """Its process id while it runs."""

    @abstractmethod
    def poll(self) -> Exit | None:
        """None while it runs, its :class:`Exit` once it ended."""

    @abstractmethod
    async def wait_exit(self) -> Exit:
        """Wait until it ends."""

    @abstractmethod
    async def ready(self) -> bool:
        """Whether it serves now."""

    @abstractmethod
    async def stop(self, grace_s: float) -> Exit | None:
        """Stop it: gracefully, then forcibly after ``grace_s``; None if it was not running."""

    def log_tail(self) -> str:
        """The last lines of its log, for error messages."""
        if self.log_path is None:
            return ""
        lines = tail_lines(self.log_path, _TAIL)
        return f"; last lines of {self.log_path}:\n  " + "\n  ".join(lines) if lines else ""


async def _http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def http_ready(url: str) -> ReadyCheck:
    """Ready when ``GET url`` answers 200."""
    return lambda: _http_ok(url)


def port_ready(port: int, host: str = "127.0.0.1") -> ReadyCheck:
    """Ready when ``host:port`` accepts a TCP connection."""

    async def check() -> bool:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return check


@dataclass(frozen=True)
class ProcessSpec:
    """A child process to supervise."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to (and overriding) the supervisor's environment."""
    ready: ReadyCheck | None = None
    tier: int = 1
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 15.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: SIGTERM this child when the thread that started it ends (the supervisor)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess(Unit):
    """A :class:`ProcessSpec` run with ``asyncio`` subprocesses, output in its log file.

    Launch it from the thread that runs the event loop for the whole of its life: on Linux
    the child is sent SIGTERM when that thread ends.
    """

    def __init__(self, spec: ProcessSpec, log_dir: Path) -> None:
        self.spec = spec
        self.name = spec.name
        self.tier = spec.tier
        self.ready_timeout_s = spec.ready_timeout_s
        self.stop_grace_s = spec.stop_grace_s
        self.log_file = log_dir / f"{spec.name}.log"
        self.log_path = self.log_file
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None
        self._output_from = 0
        self.launches = 0

    async def launch(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        log_file = self.log_file.open("ab")
        self.launches += 1
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log_file.write(f"=== {stamp} launch {self.launches}: {' '.join(self.spec.argv)}\n".encode())
        log_file.flush()
        self._output_from = log_file.tell()
        self._log_file = log_file
        self._proc = None
        try:
            self._proc = await self._spawn(log_file)
        except BaseException:
            self._close_log()
            raise

    async def _spawn(self, log_file: IO[bytes]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env},
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def poll(self) -> Exit | None:
        if self._proc is None or self._proc.returncode is None:
            return None
        return Exit(self._proc.returncode)

    async def wait_exit(self) -> Exit:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never launched")
        return Exit(await self._proc.wait())

    async def ready(self) -> bool:
        return True if self.spec.ready is None else await self.spec.ready()

    def output(self) -> str:
        """What the current launch wrote so far."""
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(self._output_from)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    async def stop(self, grace_s: float) -> Exit | None:
        proc = self._proc
        if proc is None:
            self._close_log()
            return None
        was_running = proc.returncode is None
        try:
            if was_running:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace_s)
                except TimeoutError:
                    get_logger("inter1_pipeline.supervisor").warning(
                        "process_kill", process=self.name, pid=proc.pid, grace_s=grace_s
                    )
            # SIGKILL whatever is left of its process group (it, or what it started).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        finally:
            self._close_log()
        return Exit(proc.returncode) if was_running else None

    def _close_log(self) -> None:
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()


@dataclass
class UnitStatus:
    """What the supervisor knows about one unit (a snapshot for status lines)."""

    name: str
    state: State = "starting"
    pid: int | None = None
    restarts: int = 0
    since: float = field(default_factory=time.monotonic)
    last_exit: Exit | None = None
    log_path: Path | None = None


OnChange = Callable[[UnitStatus], None]


class Supervisor:
    """Starts units, keeps them running, stops them in order; see the module docstring.

    Args:
        policy: restart policy for every unit.
        status_file: where to keep a JSON snapshot of the units (pids, states, restarts)
            for other processes; removed at :meth:`stop`.
        on_change: called with a unit's status whenever its state changes.
    """

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        status_file: Path | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._status_file = status_file
        self._on_change = on_change
        self._units: dict[str, Unit] = {}
        self._status: dict[str, UnitStatus] = {}
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._first_ready: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[ChildProcess] = []
        self._stopping = False
        self.failure: asyncio.Future[SupervisorError] | None = None
        """Set (to the error) when a unit cannot be kept running."""

    # public ------------------------------------------------------------------------------

    async def start(self, units: Sequence[Unit]) -> None:
        """Launch ``units`` together and wait until each is ready.

        Raises:
            SupervisorError: a unit failed for good (see :class:`RestartPolicy`).
        """
        if self.failure is None:
            self.failure = asyncio.get_running_loop().create_future()
        waits = []
        for unit in units:
            if unit.name in self._units:
                raise ValueError(f"unit {unit.name} is already supervised")
            self._units[unit.name] = unit
            self._status[unit.name] = UnitStatus(unit.name, log_path=unit.log_path)
            ready = asyncio.get_running_loop().create_future()
            self._first_ready[unit.name] = ready
            self._keepers[unit.name] = asyncio.create_task(
                self._keep(unit), name=f"supervise-{unit.name}"
            )
            waits.append(ready)
        await asyncio.gather(*waits)

    async def run_task(self, spec: ProcessSpec, log_dir: Path) -> tuple[Exit, str]:
        """Run a one-shot process to its end (stopped with the rest on :meth:`stop`);
        its exit and what it wrote."""
        task = ChildProcess(spec, log_dir)
        self._tasks.append(task)
        try:
            await task.launch()
            result = await task.wait_exit()
            return result, task.output()
        finally:
            await task.stop(spec.stop_grace_s)
            self._tasks.remove(task)

    def statuses(self) -> list[UnitStatus]:
        """Every unit's status, in start order."""
        return list(self._status.values())

    def unit(self, name: str) -> Unit:
        """The unit called ``name``."""
        return self._units[name]

    async def stop(self) -> list[tuple[str, Exit | None]]:
        """Stop one-shot tasks, then every unit, highest tier first (idempotent)."""
        self._stopping = True
        results: list[tuple[str, Exit | None]] = []
        for task in list(self._tasks):
            results.append((task.name, await task.stop(task.stop_grace_s)))
        for keeper in self._keepers.values():
            keeper.cancel()
        for keeper in self._keepers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        for tier in sorted({u.tier for u in self._units.values()}, reverse=True):
            units = [u for u in self._units.values() if u.tier == tier]
            for unit in units:
                self._set(unit, "stopping")
            exits = await asyncio.gather(
                *(u.stop(u.stop_grace_s) for u in units), return_exceptions=True
            )
            for unit, outcome in zip(units, exits, strict=True):
                if isinstance(outcome, BaseException):
                    get_logger("inter1_pipeline.supervisor").error(
                        "process_stop_failed", process=unit.name, error=str(outcome)
                    )
                    results.append((unit.name, None))
                    continue
                status = self._status[unit.name]
                status.last_exit = outcome or status.last_exit
                self._set(unit, "stopped")
                results.append((unit.name, outcome))
        self._units.clear()
        self._keepers.clear()
        if self._status_file is not None:
            self._status_file.unlink(missing_ok=True)
        return results

    # internals ---------------------------------------------------------------------------

    def _set(self, unit: Unit, state: State) -> None:
        status = self._status[unit.name]
        status.state = state
        status.pid = unit.pid if state in ("starting", "ready") else None
        status.since = time.monotonic()
        self._write_status_file()
        if self._on_change is not None:
            self._on_change(status)

    def _write_status_file(self) -> None:
        if self._status_file is None or self._stopping:
            return
        snapshot = {
            "pid": os.getpid(),
            "units": [
                {
                    "name": s.name,
                    "state": s.state,
                    "pid": s.pid,
                    "restarts": s.restarts,
                    "last_exit_code": s.last_exit.code if s.last_exit else None,
                    "log": str(s.log_path) if s.log_path else None,
                }
                for s in self._status.values()
            ],
        }
        self._status_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self._status_file.with_suffix(".tmp")
        temp.write_text(json.dumps(snapshot, indent=1), encoding="utf-8")
        temp.replace(self._status_file)

    def _fail(self, unit: Unit, message: str) -> None:
        error = SupervisorError(message + unit.log_tail())
        self._set(unit, "failed")
        get_logger("inter1_pipeline.supervisor").error(
            "process_failed", process=unit.name, reason=message
        )
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(error)
        first = self._first_ready[unit.name]
        if not first.done():
            first.set_exception(error)

    async def _keep(self, unit: Unit) -> None:
        """Launch, wait ready, wait for the exit, back off, again; until stopped or failed."""
        log = get_logger("inter1_pipeline.supervisor", process=unit.name)
        status = self._status[unit.name]
        streak = 0
        previous: Exit | str | None = None  # how the previous run ended
        while True:
            self._set(unit, "starting")
            started = time.monotonic()
            try:
                await unit.launch()
            except (PipelineError, OSError) as exc:  # e.g. a broker error, a missing program
                outcome: Exit | str = f"failed to start: {exc}"
            else:
                self._set(unit, "starting")  # now with its pid
                if previous is not None:
                    log.warning(
                        "process_restarted",
                        pid=unit.pid,
                        restarts=status.restarts,
                        previous_exit_code=_code(previous),
                        previous_exit=_reason(previous),
                    )
                outcome = await self._wait_ready(unit)
                if outcome == "ready":
                    self._set(unit, "ready")
                    log.info("process_ready", pid=unit.pid, restarts=status.restarts)
                    first = self._first_ready[unit.name]
                    if not first.done():
                        first.set_result(None)
                    outcome = await unit.wait_exit()
            if isinstance(outcome, Exit):
                status.last_exit = outcome
            if time.monotonic() - started >= self.policy.stable_after_s:
                streak = 0
            streak += 1
            limit = self.policy.max_restarts
            permanent = _code(outcome) in self.policy.permanent_exit_codes
            if permanent or (limit is not None and streak > limit):
                why = "" if permanent else f" after {limit} restart(s)"
                self._fail(unit, f"{unit.name}: {_reason(outcome)}{why}; not restarting it")
                return
            delay = self.policy.backoff_s(streak)
            log.warning(
                "process_exited",
                exit_code=_code(outcome),
                exit=_reason(outcome),
                restart_in_s=delay,
                restarts=status.restarts,
            )
            self._set(unit, "backoff")
            await asyncio.sleep(delay)
            status.restarts += 1
            previous = outcome

    async def _wait_ready(self, unit: Unit) -> Exit | str:
        """``ready``, the unit's exit, or why it was stopped (not ready in time)."""
        deadline = time.monotonic() + unit.ready_timeout_s
        while time.monotonic() < deadline:
            ended = unit.poll()
            if ended is not None:
                return ended
            if await unit.ready():
                return "ready"
            await asyncio.sleep(_POLL_S)
        await unit.stop(unit.stop_grace_s)
        return f"was not ready within {unit.ready_timeout_s:g} s (stopped)"


def _code(outcome: Exit | str) -> int | None:
    return outcome.code if isinstance(outcome, Exit) else None


def _reason(outcome: Exit | str) -> str:
    return outcome.describe() if isinstance(outcome, Exit) else outcome


async def run_until_signal(
    main: Coroutine[Any, Any, T],
) -> tuple[T | None, signal.Signals | None]:
    """Run ``main``; SIGINT or SIGTERM cancels it (its ``finally`` blocks stop what it
    started). Returns its result, or None and the signal that stopped it. A second signal
    while it stops is reported and otherwise ignored: the orderly stop goes on."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if received:
            get_logger("inter1_pipeline.supervisor").warning(
                "stopping_please_wait", signal=signum.name
            )
            return
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        result = await task
        return result, (received[0] if received else None)
    except asyncio.CancelledError:
        if not received:
            raise
        return None, received[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
