-- Broadcast rooms (kind 'b'). Recipients of a broadcast are not members of its room: each gets
-- copies of its messages in their single room with the sender (messages.parent_broadcast_id).
-- The rooms table's CHECK is widened to 'b' by the store at open (store::sqlite_schema): SQLite
-- changes a CHECK only by rebuilding the table with foreign keys off, which cannot happen inside
-- the transaction sqlx runs each migration in.
CREATE TABLE broadcast_members (
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
ALTER TABLE messages ADD COLUMN parent_broadcast_id TEXT;
CREATE INDEX messages_parent_broadcast ON messages (parent_broadcast_id)
    WHERE parent_broadcast_id IS NOT NULL;
