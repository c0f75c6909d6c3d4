"""Faults injected into a real worker process, for the poison-pill tests: rules that raise.

Why here and not behind a flag in the product: the worker must not carry test switches. The test
starts `python -c "import faults; faults.install(); ..."`, which wraps the named functions before
the worker imports them into its agents; `TEST_FAULTS` says which stage raises for which account:
`usage=acct-x` (for that account's events of value 13 only), `crm=acct-y`, `draft=acct-z`, and
`loop=crm`, which makes that agent's loop crash outside any one record's step (as an engine error
inside Faust's stream would), so that it crashes again at every restart.
"""
from __future__ import annotations

import os

MARK = 13.0  # the value of a telemetry event the usage fault raises for


class InjectedFault(RuntimeError):
    pass


def install() -> None:
    spec = dict(item.split("=", 1) for item in os.environ.get("TEST_FAULTS", "").split(",") if item)
    from milestone_stream import faust_compat
    from milestone_stream.agents.detector import crm, usage
    from milestone_stream.agents.drafter import agent as drafter

    if "usage" in spec:
        apply_event = usage.apply_event

        def raising_apply(row, event, *args, **kwargs):
            if event.account_id == spec["usage"] and event.value == MARK:
                raise InjectedFault(f"injected fault for {event.event_id}")
            return apply_event(row, event, *args, **kwargs)

        usage.apply_event = raising_apply
    if "crm" in spec:
        apply_change = crm.apply_change

        def raising_change(row, change, *args, **kwargs):
            if change.account_id == spec["crm"]:
                raise InjectedFault(f"injected fault for {change.change_id}")
            return apply_change(row, change, *args, **kwargs)

        crm.apply_change = raising_change
    if "draft" in spec:
        compile_context = drafter.compile_context

        def raising_context(account_id, *args, **kwargs):
            if account_id == spec["draft"]:
                raise InjectedFault(f"injected drafting fault for {account_id}")
            return compile_context(account_id, *args, **kwargs)

        drafter.compile_context = raising_context
    if "loop" in spec:
        from milestone_stream.observability import RUNNING

        each_in_order = faust_compat.each_in_order

        async def crashing_loop(app, stream, agent, step, park):
            if agent != spec["loop"]:
                return await each_in_order(app, stream, agent, step, park)
            with RUNNING.loop(agent):  # as an engine error inside Faust's stream would
                async for event in stream.events():
                    raise InjectedFault(f"injected engine fault in agent {agent} at offset {event.message.offset}")

        faust_compat.each_in_order = crashing_loop
