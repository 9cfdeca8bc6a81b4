"""Fault injection through the key, the query parameter and the simulator-wide plan."""

from __future__ import annotations

import pytest
from sim_helpers import (
    CLIP_A,
    CLIP_RAMP,
    Driver,
    SimulatorFactory,
    compact,
    frames_of,
    without_closing,
)

from simulator.config import LoadConfig, SimulatorConfig
from simulator.exceptions import FaultSpecError
from simulator.faults import FaultPlan, parse_faults
from simulator.routes import StreamRequest, parse_stream_request


async def test_drop_fault_aborts_the_connection(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_A), key="sim-fault:drop@5")

    assert run.close.code == 1006
    assert "session.ended" not in run.types
    usage = await driver.usage(run.session_id)
    assert (usage["end_reason"], usage["close_code"], usage["faults"]) == (
        "fault_drop", 1006, "drop@5",
    )  # fmt: skip
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"]
    assert usage["media_received_ms"] >= 5000
    assert {r["reason"] for r in usage["dropped_ranges"]} <= {"undelivered"}


@pytest.mark.parametrize(("code", "error"), [(1011, "ih1001"), (1013, "ih1003")])
async def test_close_fault_sends_the_error_and_closes(
    driver: Driver, code: int, error: str
) -> None:
    run = await driver.run(frames_of(CLIP_A), key=f"sim-fault:close={code}@0")

    assert [compact(e) for e in run.events] == [("session.ready",), ("error", error)]
    assert run.close.code == code
    usage = await driver.usage(run.session_id)
    assert usage["analysed_ms"] == 0
    assert usage["dropped_ms"] == usage["media_received_ms"]


async def test_stall_fault_delays_but_loses_nothing(driver: Driver) -> None:
    normal = await driver.run(frames_of(CLIP_A))
    stalled = await driver.run(frames_of(CLIP_A), key="sim-fault:stall=1@0")

    assert without_closing(stalled) == without_closing(normal)
    usage = await driver.usage(stalled.session_id)
    assert (usage["faults"], usage["analysed_ms"]) == ("stall=1@0", 14200)


async def test_slow_fault_makes_the_session_shed(start_simulator: SimulatorFactory) -> None:
    # an instant model with a queue of one window's media: only the fault's ratio makes the
    # first window keep the model 2.4 s while the next four wait (20 s sent at once)
    driver = await start_simulator(
        load=LoadConfig(processing_ratio=0.0, queue_windows=1, max_lag_s=3600.0)
    )
    run = await driver.run(frames_of(CLIP_RAMP), key="sim-fault:slow=0.3")
    unfaulted = await driver.run(frames_of(CLIP_RAMP))

    usage = await driver.usage(run.session_id)
    dropped = [(r["start"], r["end"]) for d in run.data("coverage.dropped") for r in d["ranges"]]
    assert dropped == [(14.0, 17.0), (17.0, 20.0)]
    assert {r["reason"] for r in usage["dropped_ranges"]} == {"backpressure"}
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 20000
    assert unfaulted.data("coverage.dropped") == []


async def test_unknown_event_and_error_envelope_faults(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_A), key="sim-fault:unknown_event@0,error=ih1001@2")

    unknown = [e for e in run.events if e.type == "sim.unknown"]
    assert len(unknown) == 1
    assert unknown[0].raw["data"] == {"note": "injected unknown event kind"}
    assert run.data("error") == [
        {
            "code": "ih1001",
            "message": "Injected error (simulator fault).",
            "link": "https://docs.interhuman.ai/errors#ih1001",
        }
    ]
    assert run.types[-1] == "session.ended"
    assert run.close.code == 1000


async def test_simulator_wide_faults_apply_to_every_session(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(
        faults=parse_faults("close=1013@0"), load=LoadConfig(processing_ratio=0.0)
    )
    first = await driver.run([])
    overridden = await driver.run([], key="sim-fault:close=1011@0")

    assert (first.close.code, overridden.close.code) == (1013, 1011)


async def test_fault_keys_can_be_disabled(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator(allow_fault_keys=False)

    with pytest.raises(Exception, match="HTTP 401"):
        await driver.client("sim-fault:drop@0").stream().connect()


def test_query_parameter_faults_combine_with_the_key() -> None:
    config = SimulatorConfig()
    request = parse_stream_request(
        "/v2/stream/analyze?model=inter-2-audio&sim_fault=drop@3", "sim-fault:slow=2", config
    )

    assert isinstance(request, StreamRequest)
    assert request.model == "inter-2-audio"
    assert request.faults == FaultPlan(drop_at_s=3.0, processing_ratio=2.0)
    assert request.faults.describe() == "drop@3,slow=2"


def test_bad_fault_spec_in_a_key_is_a_400() -> None:
    response = parse_stream_request("/v1/stream/analyze", "sim-fault:explode", SimulatorConfig())

    assert not isinstance(response, StreamRequest)
    assert response.status_code == 400


def test_parse_faults_accepts_the_documented_syntax() -> None:
    plan = parse_faults("drop@5, close=1013@2,stall=3@1,slow=0.5,unknown_event@4,error=ih6001@6")

    assert plan == FaultPlan(
        drop_at_s=5.0,
        close_code=1013,
        close_at_s=2.0,
        stall_s=3.0,
        stall_at_s=1.0,
        processing_ratio=0.5,
        unknown_event_at_s=4.0,
        error_code="ih6001",
        error_at_s=6.0,
    )
    assert parse_faults("") == FaultPlan()
    assert parse_faults(plan.describe()) == plan


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("close=1000", "fault 'close=1000': close code must be 1011 or 1013"),
        ("drop@soon", "fault 'drop@soon': '@' time must be a number, got 'soon'"),
        ("slow=-1", "fault 'slow=-1': ratio must be >= 0, got '-1'"),
        ("error=boom", "fault 'error=boom': error code must look like ih1001"),
        (
            "explode",
            "unknown fault 'explode'; expected drop@S, close=1011|1013@S, stall=SECONDS@S, "
            "slow=RATIO, unknown_event@S, unknown_value@S, ready_delay=SECONDS or "
            "error=CODE@S",
        ),
    ],
)
def test_parse_faults_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_faults(spec)

    assert str(caught.value) == message
    assert caught.value.exit_code == 78
