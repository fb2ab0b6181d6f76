-- Stream entries Postgres refused for what they hold (adapters/store/dead_letter.py): the
-- write-behind moves them here with the error and drains past them. `payload` is the entry's
-- JSON exactly as the stream held it (bytea: it may hold what jsonb refuses, like \u0000);
-- the text columns show control characters as \uXXXX escapes.

CREATE TABLE dead_letters (
    id         bigint PRIMARY KEY,         -- stream entry id: ms << 20 | n
    type       text   NOT NULL,
    key        text   NOT NULL,
    agent_id   text,
    payload    bytea  NOT NULL,
    error      text   NOT NULL,
    sqlstate   text,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
