"""Header-less signal ingest (`POST /v1/hooks/{hook_id}`, docs/hooks.md): hook records bound to a
`signals` key (store.py), the body templates that turn a sender's text into a signal
(templates.py), and the optional HMAC signature (signature.py). The URL's hook id is the secret:
it is stored as a hash and never logged (secret.py redacts it from paths)."""
