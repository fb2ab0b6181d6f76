-- Reads of history that left the engine's memory (adapters/store/history.py): an old signal id,
-- the dedupe window loaded at recovery, and an agent's closed positions and trades paged in the
-- control port's sort order.

CREATE INDEX signals_received_idx ON signals (received_at);
CREATE INDEX positions_closed_seq_idx ON positions (agent_id, ((doc->>'seq')::bigint), id COLLATE "C")
    WHERE status = 'closed';
CREATE INDEX trades_agent_ts_idx ON trades (agent_id, ts, id COLLATE "C");
