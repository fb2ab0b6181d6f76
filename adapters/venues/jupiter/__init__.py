"""The Jupiter venue (Solana): the Swap API client (`client`, `schemas`, `errors`), landing a
signed transaction over RPC (`landing`), and the Venue itself (`venue`)."""
