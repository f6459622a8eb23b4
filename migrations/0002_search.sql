-- Search over message text and the orders the app lists things in.
--
-- Trigram tokens make any substring of three or more characters findable, which is what a search
-- box promises (word tokens would miss "serial" in "deserialize"); shorter queries fall back to
-- LIKE over the rows. The index holds no text of its own (content='messages'): triggers keep it in
-- step with the table inside the same transaction as each write.

CREATE VIRTUAL TABLE messages_fts USING fts5(
    content,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'trigram'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
END;

-- Index the messages written before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE INDEX conversations_by_updated ON conversations(updated_at DESC, seq DESC);
CREATE INDEX models_by_last_used ON models(last_used_at DESC, name);
CREATE INDEX downloads_by_created ON downloads(created_at DESC, seq DESC);
CREATE INDEX conversions_by_created ON conversions(created_at DESC, seq DESC);
