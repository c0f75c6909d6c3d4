"""The approval UI as a long-running service (`milestones ui`).

Why its own process: the UI scales with CSMs (any number behind a load balancer, each rebuilding
the same view from the topics) and needs none of the worker's tables.
"""
from __future__ import annotations

from aiohttp import web

from milestone_stream.deadletter import Position
from milestone_stream.kafka_io import producer
from milestone_stream.schemas.records import ApprovalDecision
from milestone_stream.settings import ConfigError, Settings
from milestone_stream.signals import stop_on_signals
from milestone_stream.sinks.approvals.risks import RiskBoard
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.slack import PATH, SlackInteractions
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.approvals.web import ApprovalUI
from milestone_stream.sinks.impact.source import load as load_impact
from milestone_stream.sinks.impact.web import ImpactPage
from milestone_stream.sinks.sender.slack import SlackApi
from milestone_stream.topics import TopicNames


async def serve_ui(settings: Settings, bootstrap: str) -> None:
    signer = Signer(settings.signing_key())
    names = TopicNames(settings.topic_prefix)
    stop = stop_on_signals()
    view = ApprovalView(bootstrap, names)
    await view.start()
    try:
        await view.caught_up()
        async with producer(bootstrap) as prod:
            async def publish(decision: ApprovalDecision) -> Position:
                return await prod.send_and_wait(names.approval_decisions, key=decision.approval_id.encode(),
                                                value=decision.to_avro())

            ui = ApprovalUI(view, signer, publish, trusted_header=settings.ui_trusted_header,
                            secure_cookies=settings.ui_url.startswith("https://"))
            ui.routes += ImpactPage(ui, lambda cohort, kind: load_impact(bootstrap, names, ui.clock, cohort=cohort,
                                                                         kind=kind)).routes()
            board = RiskBoard(bootstrap, names, ui)  # the CSM's accounts at risk (/risks), following `risks`
            ui.routes += board.routes()
            await board.start()
            slack = slack_interactions(settings, ui)
            if slack is not None:
                ui.routes += slack.routes()
            runner = web.AppRunner(ui.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.ui_bind, settings.ui_port).start()
            print(f"approval UI listening on {settings.ui_bind}:{settings.ui_port} ({settings.ui_url})", flush=True)
            await stop.wait()
            await runner.cleanup()
            await board.stop()
    finally:
        await view.stop()


def slack_interactions(settings: Settings, ui: ApprovalUI) -> SlackInteractions | None:
    """The Slack endpoint when Slack is configured: the buttons the sender posts need both the bot token
    (to look up who tapped) and the signing secret (to trust the tap); one without the other is an error."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    if token is None and secret is None:
        return None
    if token is None or secret is None:
        missing = "MILESTONES_SLACK_BOT_TOKEN" if token is None else "MILESTONES_SLACK_SIGNING_SECRET"
        raise ConfigError(f"{missing} must be set too: Slack approval buttons need the bot token "
                          "and the signing secret")
    print(f"approval UI: Slack interactions at {settings.ui_url}{PATH}", flush=True)
    # Slack waits 3 s for the answer to a tap: the users.info look-up gets 2 of them
    api = SlackApi(token.get_secret_value(), settings.slack_api_url, timeout=2)
    return SlackInteractions(ui, secret.get_secret_value(), api)
