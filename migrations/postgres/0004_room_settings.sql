-- Each member's settings of a room: muted (no push), archived, view-once mode, a nickname, a
-- translation language, and what they deleted for themselves (messages up to cleared_seq).
ALTER TABLE room_members ADD COLUMN muted BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE room_members ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE room_members ADD COLUMN one_seen BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE room_members ADD COLUMN nick_name TEXT;
ALTER TABLE room_members ADD COLUMN trans_to TEXT;
ALTER TABLE room_members ADD COLUMN cleared_seq BIGINT NOT NULL DEFAULT 0;
