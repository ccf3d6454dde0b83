-- Broadcast rooms (kind 'b'). Recipients of a broadcast are not members of its room: each gets
-- copies of its messages in their single room with the sender (messages.parent_broadcast_id).
ALTER TABLE rooms DROP CONSTRAINT IF EXISTS rooms_kind_check;
ALTER TABLE rooms ADD CONSTRAINT rooms_kind_check CHECK (kind IN ('s', 'g', 'b'));
CREATE TABLE broadcast_members (
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
ALTER TABLE messages ADD COLUMN parent_broadcast_id TEXT;
CREATE INDEX messages_parent_broadcast ON messages (parent_broadcast_id)
    WHERE parent_broadcast_id IS NOT NULL;
