-- Group settings, and when each member's receipt watermarks last moved (a group message's
-- delivered/seen status per member comes from those watermarks).
ALTER TABLE rooms ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN extra_data TEXT;
ALTER TABLE room_members ADD COLUMN delivered_at TEXT;
ALTER TABLE room_members ADD COLUMN seen_at TEXT;
