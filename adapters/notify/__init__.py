"""Outbound notifications: fills, exits, alerts, breaker trips and a daily summary sent to
Telegram, Discord and signed webhooks from a bounded queue per channel, off the trading path
(docs/notifications.md). The daemon builds a `Notifier` (notifier.py) and subscribes it."""
