-- Eddy swap store, SQLite schema v1.
CREATE TABLE swaps (
    id          TEXT    PRIMARY KEY,          -- swap id (hex of the payment hash)
    kind        TEXT    NOT NULL,             -- loop_out_client | loop_out_server | loop_in_client | loop_in_server
    state_name  TEXT    NOT NULL,             -- the state machine's state tag
    terminal    INTEGER NOT NULL,             -- 1 once the swap can no longer change
    state       TEXT    NOT NULL,             -- the full state, JSON
    version     INTEGER NOT NULL,             -- bumped by every transition (optimistic concurrency)
    created_at  INTEGER NOT NULL,             -- unix seconds
    updated_at  INTEGER NOT NULL
);
CREATE INDEX swaps_by_activity ON swaps (terminal, kind);

CREATE TABLE swap_events (
    swap_id  TEXT    NOT NULL REFERENCES swaps (id),
    seq      INTEGER NOT NULL,                -- = the version the event produced
    event    TEXT    NOT NULL,                -- JSON
    at       INTEGER NOT NULL,
    PRIMARY KEY (swap_id, seq)
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
