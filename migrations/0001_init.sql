-- CortexStream catalog, first schema.
--
-- Conventions: ids are prefixed random strings (mdl_, cnv_, msg_, dl_, cv_); times are Unix
-- milliseconds; sizes are bytes; JSON goes in TEXT columns. Enum-like columns (state, role, kind,
-- format) are checked in Rust, not with CHECK constraints, so a new variant needs no table rebuild.
-- Tables whose rows are listed in insertion order carry `seq INTEGER PRIMARY KEY`: an explicit rowid
-- alias, because VACUUM may renumber an implicit rowid.

CREATE TABLE models (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL UNIQUE,
    path                 TEXT NOT NULL UNIQUE,
    -- source: kind is hub | gguf | folder | converted | default; the other columns per kind.
    source_kind          TEXT NOT NULL,
    source_repo          TEXT,
    source_revision      TEXT,
    source_commit        TEXT,
    source_file          TEXT,
    source_path          TEXT,
    -- No foreign key: a converted model remembers where it came from after that model is deleted.
    source_from_model_id TEXT,
    format               TEXT NOT NULL,
    architecture         TEXT,
    parameters           INTEGER,
    quant_bits           INTEGER,
    quant_group_size     INTEGER,
    dtype                TEXT,
    size_bytes           INTEGER NOT NULL,
    added_at             INTEGER NOT NULL,
    last_used_at         INTEGER,
    -- Per-model default settings, each NULL when the engine's default applies.
    system_prompt        TEXT,
    temperature          REAL,
    top_p                REAL,
    top_k                INTEGER,
    max_tokens           INTEGER,
    context_length       INTEGER
);

CREATE TABLE downloads (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    repo          TEXT NOT NULL,
    revision      TEXT NOT NULL,
    include       TEXT,                 -- JSON array of globs; NULL downloads every file
    state         TEXT NOT NULL,
    total_bytes   INTEGER NOT NULL DEFAULT 0,
    done_bytes    INTEGER NOT NULL DEFAULT 0,
    error_code    TEXT,
    error_message TEXT,
    error_details TEXT,                 -- JSON
    model_id      TEXT REFERENCES models(id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX downloads_by_state ON downloads(state);

CREATE TABLE conversions (
    seq                    INTEGER PRIMARY KEY,
    id                     TEXT NOT NULL UNIQUE,
    -- No foreign key: the record of a conversion outlives its source model.
    model_id               TEXT NOT NULL,
    name                   TEXT NOT NULL,
    bits                   INTEGER,      -- NULL: no quantization, only a dtype change
    group_size             INTEGER NOT NULL,
    dtype                  TEXT,
    state                  TEXT NOT NULL,
    done_tensors           INTEGER NOT NULL DEFAULT 0,
    total_tensors          INTEGER NOT NULL DEFAULT 0,
    done_bytes             INTEGER NOT NULL DEFAULT 0,
    total_bytes            INTEGER NOT NULL DEFAULT 0,
    estimated_output_bytes INTEGER NOT NULL DEFAULT 0,
    result_model_id        TEXT REFERENCES models(id) ON DELETE SET NULL,
    error_code             TEXT,
    error_message          TEXT,
    error_details          TEXT,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX conversions_by_state ON conversions(state);

CREATE TABLE conversations (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    model_id        TEXT REFERENCES models(id) ON DELETE SET NULL,
    system_prompt   TEXT,
    settings        TEXT NOT NULL DEFAULT '{}',   -- JSON ModelSettings
    current_leaf_id TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- The visible leaf is a message of this conversation. Deferred, so that deleting a
    -- conversation (which cascades to its messages) is checked only once, at commit.
    FOREIGN KEY (id, current_leaf_id) REFERENCES messages(conversation_id, id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE messages (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id         TEXT,
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    -- No foreign key: a message remembers which model wrote it after the model is deleted.
    model_id          TEXT,
    created_at        INTEGER NOT NULL,
    -- Stats of a finished reply; finish_reason is NULL until the reply is finished.
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cached_tokens     INTEGER,
    ttft_ms           INTEGER,
    tokens_per_s      REAL,
    finish_reason     TEXT,
    error_code        TEXT,
    error_message     TEXT,
    error_details     TEXT,
    UNIQUE (conversation_id, id),
    -- A parent is a message of the same conversation (NULL parent: a root).
    FOREIGN KEY (conversation_id, parent_id) REFERENCES messages(conversation_id, id)
        ON DELETE CASCADE
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, created_at);
CREATE INDEX messages_by_parent ON messages(parent_id, created_at);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,               -- JSON
    updated_at INTEGER NOT NULL
);
