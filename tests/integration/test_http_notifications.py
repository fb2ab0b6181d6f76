"""Notification channels over the control port (`/v1/notifications`) through the real Daemon
(memory store, paper venue, the control port in-process) and fake Telegram / Discord / webhook
servers: a channel created over the API takes fills at once, lists without a secret, sends a
test message, stops when deleted, is refused with the config file's rules, is admin only, and
comes back in a second daemon on the same data dir."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tradingd.adapters.app.logs import RedactSecrets
from tradingd.adapters.app.settings import Settings
from tradingd.adapters.notify.channel_file import channels_path
from tradingd.adapters.notify.config import NotifySettings

from tests.fakes.notify_servers import FakeDiscord, FakeTelegram, WebhookSink
from tests.integration.http_harness import SOL, TOKEN, Api, serve
from tests.polling import poll_until_async

TRAILING = {"stop_loss": {"mode": "fixed", "default_pct": -10}}


@asynccontextmanager
async def daemon_api(data_dir: Path, *config_channels: dict[str, Any]) -> AsyncIterator[Api]:
    """A daemon started as `tradingd run` starts its notifications (the stored channels
    loaded), its control port in-process."""

    def configure(settings: Settings) -> None:
        settings.notify = msgspec.convert(
            {"channels": list(config_channels), "drain_s": 1.0}, NotifySettings
        )

    async with serve(data_dir, configure=configure) as api:
        api.daemon.start_notifications()
        yield api


def tg(fake: FakeTelegram, name: str = "ops", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "telegram", "api_url": fake.url, "bot_token": fake.token,
            "chat_id": 42, **extra}  # fmt: skip


async def buy(api: Api) -> None:
    await api.prices((SOL, 150.0), (TOKEN, 1.0))
    await api.ok("POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK"})
    await api.settle()


async def test_a_channel_created_over_the_api_receives_the_next_fill(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    async with daemon_api(tmp_path) as api:
        assert api.daemon.notifier is None  # no channel yet: nothing subscribed
        created = await api.ok("POST", "/v1/notifications", tg(telegram, events=["fills"]))
        assert created["name"] == "ops" and created["origin"] == "api"
        assert created["host"] == telegram.url.removeprefix("http://")
        await api.agent(TRAILING)
        await buy(api)
        await poll_until_async(lambda: telegram.texts, what="the fill message")
        assert telegram.texts[0].startswith("<b>BUY BONK · t</b>")
        assert telegram.delivered[0].body["chat_id"] == 42
        notifier = api.daemon.notifier
        assert notifier is not None
        await api.ok("POST", "/v1/notifications", tg(telegram, name="two"))
        await api.ok("DELETE", "/v1/notifications/two")
        # one subscriber, the same object: channels change its routes, not the runtime's list
        assert api.daemon.runtime.event_subscribers.count(notifier.on_events) == 1


async def test_two_creations_of_one_name_at_once_make_one_channel(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    async with daemon_api(tmp_path) as api:
        answers = await asyncio.gather(
            *(api.call("POST", "/v1/notifications", tg(telegram)) for _ in range(2))
        )
        assert sorted(status for status, _ in answers) == [201, 409]
        stored = json.loads(channels_path(tmp_path).read_bytes())["channels"]
        assert [s["channel"]["name"] for s in stored] == ["ops"]


async def test_the_list_shows_every_channel_and_no_secret_anywhere(
    tmp_path: Path, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    discord, sink = FakeDiscord(), WebhookSink()
    await discord.start()
    await sink.start()
    discord_url = discord.url + discord.webhook_path
    secrets = (telegram.token, discord.webhook_path.rsplit("/", 1)[1], sink.secret)
    try:
        async with daemon_api(tmp_path, tg(telegram, name="from-file")) as api:
            await api.ok("POST", "/v1/notifications", tg(telegram))
            await api.ok("POST", "/v1/notifications",
                         {"name": "trades", "kind": "discord", "url": discord_url})  # fmt: skip
            await api.ok("POST", "/v1/notifications", {"name": "audit", "kind": "webhook",
                         "url": sink.url + "/hook", "secret": sink.secret})  # fmt: skip
            await api.ok("POST", "/v1/notifications/audit/test")
            await poll_until_async(lambda: sink.delivered, what="the webhook test")
            status, raw = await api.call("GET", "/v1/notifications", raw=None)
            assert status == 200
            doc = raw
            names = [(c["name"], c["origin"]) for c in doc["items"]]
            assert names == [("from-file", "config"), ("ops", "api"), ("trades", "api"),
                             ("audit", "api")]  # fmt: skip
            audit = doc["items"][3]
            assert audit["sent"] == 1 and audit["status"] == "ok" and "last_sent_at" in audit
            assert {c["host"] for c in doc["items"]} == {
                u.removeprefix("http://") for u in (telegram.url, discord.url, sink.url)
            }
            health = await api.ok("GET", "/health")
            assert set(health["components"]["notifications"]) == {
                "from-file", "ops", "trades", "audit"
            }  # fmt: skip
            seen = json.dumps(doc) + json.dumps(health) + await _metrics(api)
            for secret in secrets:
                assert secret not in seen
            assert sink.verifies(sink.delivered[0])
        logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
        for secret in secrets:
            assert secret not in logged
    finally:
        await discord.close()
        await sink.close()


async def test_a_created_channels_secret_is_removed_from_any_log_line(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())  # as `tradingd run` installs it, before any channel
    logging.getLogger().addHandler(handler)
    try:
        async with daemon_api(tmp_path) as api:
            await api.ok("POST", "/v1/notifications", tg(telegram))
            # a library that echoes a request URL: Telegram's holds the bot token
            logging.getLogger("tradingd.test").warning("echoed %s/bot%s/x", telegram.url,
                                                       telegram.token)  # fmt: skip
    finally:
        logging.getLogger().removeHandler(handler)
    assert "echoed" in stream.getvalue() and telegram.token not in stream.getvalue()


async def _metrics(api: Api) -> str:
    status, text = await api.call("GET", "/metrics")
    assert status == 200 and 'tradingd_notify_sent_total{channel="audit"} 1.0' in text
    return str(text)


async def test_a_test_message_arrives(tmp_path: Path, telegram: FakeTelegram) -> None:
    async with daemon_api(tmp_path) as api:
        await api.ok("POST", "/v1/notifications", tg(telegram, events=["daily_summary"]))
        status, doc = await api.call("POST", "/v1/notifications/ops/test")
        assert status == 202 and doc["name"] == "ops"
        await poll_until_async(lambda: telegram.texts, what="the test message")
        assert telegram.texts[0].startswith("<b>ALERT notification_test</b>")
        status, doc = await api.call("POST", "/v1/notifications/nope/test")
        assert status == 404


async def test_a_deleted_channel_stops_and_leaves_the_file(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    async with daemon_api(tmp_path) as api:
        await api.ok("POST", "/v1/notifications", tg(telegram, events=["fills"]))
        await api.agent({**TRAILING, "limits": {"max_positions_per_token": 5}})
        await buy(api)
        await poll_until_async(lambda: telegram.texts, what="the first fill")
        doc = await api.ok("DELETE", "/v1/notifications/ops")
        assert doc == {"name": "ops", "running": True, "dropped": 0}
        await buy(api)
        await api.ok("POST", "/v1/signals", {"token": TOKEN})
        await api.settle()
        assert len(telegram.seen) == 1
        assert (await api.ok("GET", "/v1/notifications"))["items"] == []
        assert "ops" not in (await api.ok("GET", "/health"))["components"]["notifications"]
        assert json.loads(channels_path(tmp_path).read_bytes())["channels"] == []
        assert (await api.call("DELETE", "/v1/notifications/ops"))[0] == 404
        assert (await api.call("POST", "/v1/notifications/ops/test"))[0] == 404


async def test_conflicts_are_409(tmp_path: Path, telegram: FakeTelegram) -> None:
    async with daemon_api(tmp_path, tg(telegram, name="from-file")) as api:
        await api.ok("POST", "/v1/notifications", tg(telegram))
        for name in ("ops", "from-file"):
            status, doc = await api.call("POST", "/v1/notifications", tg(telegram, name=name))
            assert status == 409 and doc["error"]["code"] == "conflict", doc
        status, doc = await api.call("DELETE", "/v1/notifications/from-file")
        assert status == 409 and doc["error"]["details"]["origin"] == "config"
        for i in range(14):  # 16 in all, the file's one included
            await api.ok("POST", "/v1/notifications", tg(telegram, name=f"c{i}"))
        status, doc = await api.call("POST", "/v1/notifications", tg(telegram, name="one-more"))
        assert status == 409 and doc["error"]["details"]["limit"] == 16
        assert len((await api.ok("GET", "/v1/notifications"))["items"]) == 16


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"kind": "slack"}, "$.kind"),
        ({"chat_id": None}, "$.chat_id"),
        ({"bot_token": None}, "$.bot_token"),
        ({"colour": "red"}, "$.colour"),
        ({"events": ["fils"]}, "$.events[0]"),
        ({"events": []}, "$.events"),
        ({"name": "Has Spaces"}, "$.name"),
        ({"bot_token": "env:TRADINGD_TEST_UNSET_TOKEN_VAR"}, "$.bot_token"),
    ],
)
async def test_a_bad_channel_is_422_naming_the_field(
    tmp_path: Path, telegram: FakeTelegram, change: dict[str, Any], path: str
) -> None:
    body = {k: v for k, v in {**tg(telegram), **change}.items() if v is not None}
    async with daemon_api(tmp_path) as api:
        status, doc = await api.call("POST", "/v1/notifications", body)
        assert status == 422, doc
        assert doc["error"]["details"]["path"] == path
        assert telegram.token not in json.dumps(doc)
        assert not channels_path(tmp_path).exists()


async def test_only_admin_keys_change_channels(tmp_path: Path, telegram: FakeTelegram) -> None:
    async with daemon_api(tmp_path) as api:
        read, trade = await api.key("read"), await api.key("trade", "signals")
        await api.ok("POST", "/v1/notifications", tg(telegram))
        for key in (read, trade):
            for method, path, body in (
                ("POST", "/v1/notifications", tg(telegram, name="other")),
                ("DELETE", "/v1/notifications/ops", None),
                ("POST", "/v1/notifications/ops/test", None),
            ):
                status, doc = await api.call(method, path, body, key=key)
                assert status == 403, (method, path, doc)
        assert (await api.call("GET", "/v1/notifications", key=trade))[0] == 403
        doc = await api.ok("GET", "/v1/notifications", key=read)
        assert [c["name"] for c in doc["items"]] == ["ops"]
        assert telegram.seen == []


async def test_channels_come_back_in_a_new_daemon_on_the_same_data_dir(
    tmp_path: Path, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADINGD_TEST_TG_TOKEN", telegram.token)
    async with daemon_api(tmp_path) as api:
        body = tg(telegram, bot_token="env:TRADINGD_TEST_TG_TOKEN", events=["fills"])
        first = await api.ok("POST", "/v1/notifications", body)
    path = channels_path(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = path.read_text()
    assert "env:TRADINGD_TEST_TG_TOKEN" in stored and telegram.token not in stored
    async with daemon_api(tmp_path) as api:
        doc = await api.ok("GET", "/v1/notifications")
        assert [(c["name"], c["origin"], c["created_at"]) for c in doc["items"]] == [
            ("ops", "api", first["created_at"])
        ]
        await api.agent(TRAILING)
        await buy(api)
        await poll_until_async(lambda: telegram.texts, what="the fill after the restart")


async def test_a_stored_channel_that_cannot_start_is_skipped_logged_and_deletable(
    tmp_path: Path,
    telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TRADINGD_TEST_TG_TOKEN", telegram.token)
    async with daemon_api(tmp_path) as api:
        await api.ok(
            "POST", "/v1/notifications", tg(telegram, bot_token="env:TRADINGD_TEST_TG_TOKEN")
        )
    monkeypatch.delenv("TRADINGD_TEST_TG_TOKEN")
    caplog.set_level(logging.INFO, logger="tradingd.notify")
    async with daemon_api(tmp_path) as api:
        assert (await api.ok("GET", "/v1/notifications"))["items"] == []
        skipped = [
            r for r in caplog.records if r.getMessage() == "notification channel not started"
        ]
        assert [(r.channel, r.reason) for r in skipped] == [  # type: ignore[attr-defined]
            ("ops", "bot_token: environment variable TRADINGD_TEST_TG_TOKEN is not set")
        ]
        doc = await api.ok("DELETE", "/v1/notifications/ops")
        assert doc == {"name": "ops", "running": False, "dropped": 0}
    assert json.loads(channels_path(tmp_path).read_bytes())["channels"] == []
