-- Resting buys (issue 15): one row per entry, written by the write-behind from EntryRested
-- (status 'resting', `doc` the engine.model.RestingEntry) and EntryEnded (status its outcome:
-- triggered|expired|cancelled, with the skip `reason` and the `order_id` it became). An ended
-- row stays as history; recovery loads only the resting ones. Versioned like every entity row.

CREATE TABLE resting_entries (
    id         text   PRIMARY KEY,
    version    bigint NOT NULL,
    agent_id   text   NOT NULL,
    signal_id  text   NOT NULL,
    token      text   NOT NULL,
    status     text   NOT NULL,            -- resting|triggered|expired|cancelled
    reason     text,                       -- why it ended without an order (expired, cancelled, a buy check)
    order_id   text,                       -- the order a triggered entry placed
    doc        jsonb                       -- engine.model.RestingEntry
);
CREATE INDEX resting_entries_live_idx ON resting_entries (agent_id) WHERE status = 'resting';
CREATE INDEX resting_entries_signal_idx ON resting_entries (signal_id);
