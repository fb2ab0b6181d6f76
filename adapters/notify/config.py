"""`[notify]` and its `[[notify.channels]]`: where outbound notifications go (docs/notifications.md).

Secrets (a Telegram bot token, a webhook's signing secret, a Discord webhook URL, which carries
its own token) are written in the file or as `env:VAR_NAME`, resolved from the environment at
load time. None is ever shown: `__repr__` redacts them and the daemon's log filter is given their
values (Settings.secret_values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct
from tradingd.engine.errors import ValidationError

EventKind = Literal["fills", "exits", "alerts", "breakers", "daily_summary"]
ALL_EVENTS: Final[tuple[EventKind, ...]] = ("fills", "exits", "alerts", "breakers", "daily_summary")
ChannelKind = Literal["telegram", "discord", "webhook"]
ENV_PREFIX: Final = "env:"
# Fields that hold a secret (or an `env:` reference to one); a Discord URL is its webhook's token.
SECRET_FIELDS: Final = ("bot_token", "secret", "url")
MAX_CHANNELS: Final = 16  # each is a metrics label value: bounded by the config

ChannelName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Secret = Annotated[str, Meta(min_length=1, max_length=4096)]


class ChannelSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """One `[[notify.channels]]` entry."""

    name: ChannelName
    kind: ChannelKind
    # discord: the webhook URL (or env:VAR); webhook: where the signed JSON is POSTed.
    url: Secret | None = None
    # telegram: the Bot API's base URL (tests point it at 127.0.0.1), the bot token and the chat.
    api_url: Annotated[str, Meta(pattern=r"^https?://")] = "https://api.telegram.org"
    bot_token: Secret | None = None
    chat_id: int | Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    # webhook: the HMAC-SHA256 key of X-Tradingd-Signature.
    secret: Secret | None = None
    events: list[EventKind] = msgspec.field(default_factory=lambda: list(ALL_EVENTS))
    queue_max: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    max_retries: Annotated[int, Meta(ge=0, le=20)] = 5
    timeout_s: Annotated[float, Meta(gt=0, le=120)] = 10.0
    backoff_initial_ms: Annotated[int, Meta(ge=1, le=60_000)] = 500
    backoff_max_ms: Annotated[int, Meta(ge=1, le=600_000)] = 30_000
    # A 429's retry_after longer than this is waited only this long (a misbehaving server
    # cannot park a channel for hours; the next try gets a new answer).
    max_retry_after_s: Annotated[float, Meta(gt=0, le=3600)] = 300.0

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("events: name at least one of " + ", ".join(ALL_EVENTS))
        if len(set(self.events)) != len(self.events):
            raise ValueError("events: listed twice")
        required = {"telegram": ("bot_token", "chat_id"), "discord": ("url",)}.get(
            self.kind, ("url", "secret")
        )
        for field in required:
            if getattr(self, field) is None:
                raise ValueError(f"{field} is required for a {self.kind} channel")
        if self.url is not None and not self.url.startswith((ENV_PREFIX, "http://", "https://")):
            raise ValueError("url: an http(s) URL or env:VAR_NAME")

    def __repr__(self) -> str:  # settings may be printed or logged: never a secret
        shown = (
            f"{f}={'[redacted]' if f in SECRET_FIELDS and getattr(self, f) else repr(getattr(self, f))}"  # noqa: E501
            for f in self.__struct_fields__
        )
        return f"ChannelSettings({', '.join(shown)})"


class NotifySettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """`[notify]`: the channels, and how long a stopping daemon lets their queues drain."""

    channels: list[ChannelSettings] = msgspec.field(default_factory=list)
    drain_s: Annotated[float, Meta(ge=0, le=60)] = 2.0

    def __post_init__(self) -> None:
        if len(self.channels) > MAX_CHANNELS:
            raise ValueError(f"channels: at most {MAX_CHANNELS}")
        names = [c.name for c in self.channels]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"channels: name {name!r} is used twice")

    def secret_values(self) -> tuple[str, ...]:
        """The resolved secrets, for the log filter (telegram's URL holds its token)."""
        out: list[str] = []
        for channel in self.channels:
            for field in SECRET_FIELDS:
                value = getattr(channel, field)
                if value and not (field == "url" and channel.kind == "webhook"):
                    out.append(value)
        return tuple(out)


def resolve_secrets(notify: NotifySettings, env: Mapping[str, str], where: str) -> None:
    """Replace each `env:VAR_NAME` secret by that variable's value. Raises ValidationError naming
    the channel and key (never a value) when the variable is unset or empty."""
    for i, channel in enumerate(notify.channels):
        for field in SECRET_FIELDS:
            value = getattr(channel, field)
            if not (isinstance(value, str) and value.startswith(ENV_PREFIX)):
                continue
            var = value.removeprefix(ENV_PREFIX)
            resolved = env.get(var)
            if not var or not resolved:
                raise ValidationError(
                    f"{where}: notify.channels[{i}] ({channel.name}).{field}: environment "
                    f"variable {var or '(empty name)'} is not set",
                    f"$.notify.channels[{i}].{field}",
                )
            if field == "url" and not resolved.startswith(("http://", "https://")):
                raise ValidationError(
                    f"{where}: notify.channels[{i}] ({channel.name}).url: {var} is not an "
                    "http(s) URL",
                    f"$.notify.channels[{i}].url",
                )
            setattr(channel, field, resolved)


def channel_secrets(channel: ChannelSettings) -> tuple[str, ...]:
    """One channel's secret values (resolved), for the log filter; a webhook's URL is not one."""
    return tuple(
        value
        for field in SECRET_FIELDS
        if (value := getattr(channel, field)) and not (field == "url" and channel.kind == "webhook")
    )


def resolve_channel(channel: ChannelSettings, env: Mapping[str, str]) -> ChannelSettings:
    """A copy of `channel` with each `env:VAR_NAME` secret replaced by that variable's value
    (the channel itself keeps the reference, which is what a channel file stores). Raises
    ValidationError at `$.<field>` (never a value) when the variable is unset or empty."""
    resolved = msgspec.structs.replace(channel)
    for field in SECRET_FIELDS:
        value = getattr(channel, field)
        if not (isinstance(value, str) and value.startswith(ENV_PREFIX)):
            continue
        var = value.removeprefix(ENV_PREFIX)
        found = env.get(var)
        if not var or not found:
            raise ValidationError(
                f"{field}: environment variable {var or '(empty name)'} is not set", f"$.{field}"
            )
        if field == "url" and not found.startswith(("http://", "https://")):
            raise ValidationError(f"url: {var} is not an http(s) URL", "$.url")
        setattr(resolved, field, found)
    return resolved
