"""Each supervision default is defined once, and every layer that offers it uses that value."""

from __future__ import annotations

import inspect

from actor_helpers import WAIT, Journal, Recorder

from actors import ChildSpec, Supervisor, TradingSystem
from actors.messages import Crash
from actors.supervision.address import DEFAULT_ASK_TIMEOUT, DEFAULT_STASH_LIMIT, Address, Slot
from actors.supervision.supervisor import (
    DEFAULT_LIVENESS_TIMEOUT,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    DEFAULT_WITHIN_SECONDS,
    SupervisorHandle,
    make_slots,
)


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def test_every_layer_offers_the_same_default_for_each_setting():
    spec = ChildSpec("a", lambda ctx: None)
    assert (spec.shutdown_timeout, spec.liveness_timeout) == (DEFAULT_SHUTDOWN_TIMEOUT, "default")
    assert (spec.liveness_for(supervised=True), spec.liveness_for(supervised=False)) == (DEFAULT_LIVENESS_TIMEOUT, None)
    assert _default(Supervisor.__init__, "max_restarts") == DEFAULT_MAX_RESTARTS
    assert _default(Supervisor.__init__, "within_seconds") == DEFAULT_WITHIN_SECONDS
    assert _default(Supervisor.__init__, "probe_interval") == DEFAULT_PROBE_INTERVAL
    assert _default(Supervisor.__init__, "start_timeout") == DEFAULT_START_TIMEOUT
    assert _default(TradingSystem.__init__, "probe_interval") == DEFAULT_PROBE_INTERVAL
    assert _default(SupervisorHandle.children, "timeout") == DEFAULT_ASK_TIMEOUT
    assert _default(SupervisorHandle.stop, "timeout") == DEFAULT_STOP_TIMEOUT
    assert _default(Address.ask, "timeout") == DEFAULT_ASK_TIMEOUT
    assert Slot("a").stash_limit == DEFAULT_STASH_LIMIT
    assert make_slots([spec])["a"].stash_limit == DEFAULT_STASH_LIMIT


def test_a_supervisor_on_defaults_restarts_the_default_number_of_crashes_and_gives_up_on_the_next():
    journal, causes = Journal(), []
    handle = Supervisor.launch([ChildSpec("a", lambda ctx: Recorder.start(ctx, journal))], fail_safe=causes.append, drills=True)
    address = handle.address("a")
    for n in range(2, DEFAULT_MAX_RESTARTS + 2):
        address.tell(Crash())
        journal.wait_for(lambda es, n=n: ("started", "a", n) in es)
    assert not handle.gave_up.is_set()
    address.tell(Crash())
    assert handle.wait(WAIT)
    assert causes == [
        f"a ended (crashed: RuntimeError: injected crash) and restarts exceeded "
        f"{DEFAULT_MAX_RESTARTS} within {DEFAULT_WITHIN_SECONDS}s"
    ]
