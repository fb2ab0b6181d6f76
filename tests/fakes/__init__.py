"""Fake external servers speaking the real wire formats (../shared/contracts/), on 127.0.0.1."""
