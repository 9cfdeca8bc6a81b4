"""``inter1-pipeline run``: the whole pipeline supervised in the foreground, until stopped.

Starts what :func:`inter1_pipeline.pipeline_stack.start_stack` starts, with no restart
limit (capped backoff), prints how to use it from another terminal, then shows one status
line (redrawn on a terminal, a plain line on each change otherwise) until SIGINT/SIGTERM
or a unit fails for good (an exit code that says its configuration is wrong).
"""

from __future__ import annotations

import asyncio
import shlex
import time

from inter1_pipeline.pipeline_stack import PipelineStack, start_stack, status_file
from inter1_pipeline.status_line import StatusLine
from inter1_pipeline.supervisor import RestartPolicy, Supervisor, UnitStatus
from runtime.settings import StackSettings, load

__all__ = ["run_pipeline", "status_text"]

_REFRESH_S = 1.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def status_text(statuses: list[UnitStatus], uptime_s: float | None = None) -> str:
    """``kafka ready · sink ready · session-worker backoff (2 restarts) ...``."""
    parts = []
    for status in statuses:
        text = f"{status.name} {status.state}"
        if status.restarts:
            text += f" ({status.restarts} restart{'s' if status.restarts > 1 else ''})"
        parts.append(text)
    line = " · ".join(parts)
    return line if uptime_s is None else f"{line} | up {_duration(uptime_s)}"


def _usage(out: StatusLine, stack: PipelineStack) -> None:
    state = shlex.quote(str(stack.state_dir))
    out.say("pipeline running; Ctrl-C stops everything. From another terminal:")
    kafka = stack.kafka.bootstrap_servers
    out.say(f"  export PIPELINE_STATE_DIR={state} KAFKA_BOOTSTRAP_SERVERS={kafka}")
    out.say("  inter1-pipeline produce --realtime VIDEO_FILE_OR_URL")
    out.say("  inter1-pipeline query 'SELECT * FROM session_summaries FINAL'")
    out.say("  inter1-pipeline report SESSION_ID --output report.html")
    out.say(f"  curl '{stack.cues_url}/sessions?active=1'   # live session state")
    out.say(f"  logs: {stack.log_dir}/")


async def run_pipeline(out: StatusLine, *, session_workers: int = 1) -> None:
    """Run until cancelled (the caller's signal handling) or until a unit fails for good.

    Raises:
        SupervisorError: a unit failed for good (everything is stopped first).
    """
    state_dir = load(StackSettings).state_dir.resolve()
    supervisor = Supervisor(RestartPolicy(), status_file=status_file(state_dir))
    try:
        stack = await start_stack(
            supervisor, out.say, state_dir=state_dir, session_workers=session_workers
        )
        _usage(out, stack)
        started = time.monotonic()
        failure = supervisor.failure
        assert failure is not None  # set by start_stack's supervisor.start
        while not failure.done():
            statuses = supervisor.statuses()
            if out.tty:
                out.update(status_text(statuses, time.monotonic() - started))
            else:
                out.update(status_text(statuses), force=True)
            await asyncio.wait([failure], timeout=_REFRESH_S)
        raise failure.result()
    finally:
        out.close()
        stopped = await supervisor.stop()
        out.say(f"stopped: {', '.join(name for name, _ in stopped)}")
