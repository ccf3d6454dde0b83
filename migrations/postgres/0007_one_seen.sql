-- View-once messages: the flag on the message, and who has opened it.
ALTER TABLE messages ADD COLUMN is_one_seen BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE message_one_seen (
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    seen_at     TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
