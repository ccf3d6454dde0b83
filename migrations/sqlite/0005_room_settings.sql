-- Each member's settings of a room: muted (no push), archived, view-once mode, a nickname, a
-- translation language, and what they deleted for themselves (messages up to cleared_seq).
ALTER TABLE room_members ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN one_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN nick_name TEXT;
ALTER TABLE room_members ADD COLUMN trans_to TEXT;
ALTER TABLE room_members ADD COLUMN cleared_seq INTEGER NOT NULL DEFAULT 0;
