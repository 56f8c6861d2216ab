-- Eddy swap store, PostgreSQL schema v1 (same shape as the SQLite one).
CREATE TABLE swaps (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    state_name  TEXT    NOT NULL,
    terminal    BOOLEAN NOT NULL,
    state       TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX swaps_by_activity ON swaps (terminal, kind);

CREATE TABLE swap_events (
    swap_id  TEXT   NOT NULL REFERENCES swaps (id),
    seq      BIGINT NOT NULL,
    event    TEXT   NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (swap_id, seq)
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
