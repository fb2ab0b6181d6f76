"""The application shell: the CLI, the daemon (the one composition root), the runtime that carries
intents to venues, settings, logs, systemd integration and the backtest driver and report."""
