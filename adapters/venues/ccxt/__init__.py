"""Centralized exchanges through CCXT (`ccxt.async_support`): one exchange account per venue
(`ccxt:<account>`), its markets' rules, the exchange client behind a circuit breaker, and the
journaled venue that never places an order twice for one intent."""
