-- tradingd schema v1. Entity tables are written by the write-behind writer from the event
-- stream; each row keeps `version`, the id of the stream entry that last wrote it, and an upsert
-- only applies if its entry is newer, so batches may be re-delivered or arrive out of order.
-- Money is numeric (u64 amounts do not fit bigint); entity documents are the engine's msgspec
-- JSON, decoded as-is at recovery.

CREATE TABLE events (
    id        bigint PRIMARY KEY,          -- stream entry id: ms << 20 | n
    ts        bigint NOT NULL,             -- engine clock, epoch ms
    type      text   NOT NULL,
    agent_id  text,
    payload   jsonb  NOT NULL
);
CREATE INDEX events_agent_idx ON events (agent_id, id) WHERE agent_id IS NOT NULL;

CREATE TABLE agents (
    id         text PRIMARY KEY,
    version    bigint  NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    doc        jsonb,                      -- engine.model.Agent
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_configs (
    agent_id      text   NOT NULL,
    event_id      bigint NOT NULL,         -- orders the revisions of one agent
    config        jsonb  NOT NULL,
    apply_to_open boolean NOT NULL DEFAULT false,
    created_at    bigint NOT NULL,
    PRIMARY KEY (agent_id, event_id)
);

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    key_hash   text NOT NULL UNIQUE,       -- hex sha-256 of the key; the key itself is never stored
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE wallets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    public_key  text NOT NULL UNIQUE,
    encrypted   bytea NOT NULL,            -- sealed private key; opened only with the passphrase
    kdf         jsonb NOT NULL,            -- KDF name and parameters
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signals (
    id             text PRIMARY KEY,
    version        bigint NOT NULL,
    client_id      text,
    token          text NOT NULL,
    side           text NOT NULL,
    received_at    bigint NOT NULL,
    agents_matched integer NOT NULL DEFAULT 0,
    doc            jsonb NOT NULL           -- engine.model.Signal
);
CREATE INDEX signals_client_idx ON signals (client_id) WHERE client_id IS NOT NULL;

CREATE TABLE signal_executions (
    signal_id  text   NOT NULL,
    agent_id   text   NOT NULL,
    version    bigint NOT NULL,
    status     text   NOT NULL,
    doc        jsonb  NOT NULL,            -- the SignalExecutionRecorded event
    PRIMARY KEY (signal_id, agent_id)
);

CREATE TABLE positions (
    id        text PRIMARY KEY,
    version   bigint NOT NULL,
    agent_id  text   NOT NULL,
    token     text,
    status    text   NOT NULL,             -- opening|open|closing|closed, or dropped (entry failed)
    doc       jsonb                        -- engine.model.Position with its exit state
);
CREATE INDEX positions_agent_idx ON positions (agent_id, status);

CREATE TABLE orders (
    id        text PRIMARY KEY,
    version   bigint NOT NULL,
    agent_id  text   NOT NULL,
    status    text   NOT NULL,             -- submitted|filled|failed
    doc       jsonb                        -- engine.model.Order
);
CREATE INDEX orders_in_flight_idx ON orders (id) WHERE status = 'submitted';

CREATE TABLE trades (
    id           text PRIMARY KEY,
    event_id     bigint  NOT NULL,
    order_id     text    NOT NULL,
    agent_id     text    NOT NULL,
    position_id  text    NOT NULL,
    side         text    NOT NULL,
    token        text    NOT NULL,
    amount       numeric NOT NULL,
    quote_amount numeric NOT NULL,
    fee          numeric NOT NULL,
    price_usd    double precision NOT NULL,
    ts           bigint  NOT NULL,
    doc          jsonb   NOT NULL          -- engine.model.Trade
);
CREATE INDEX trades_agent_idx ON trades (agent_id, event_id);

CREATE TABLE balances (
    agent_id  text    NOT NULL,
    asset     text    NOT NULL,
    version   bigint  NOT NULL,
    decimals  integer NOT NULL,
    total     numeric NOT NULL,
    reserved  numeric NOT NULL,
    PRIMARY KEY (agent_id, asset)
);

CREATE TABLE engine_state (
    key      text PRIMARY KEY,             -- 'halt'
    version  bigint NOT NULL,
    value    jsonb  NOT NULL
);
