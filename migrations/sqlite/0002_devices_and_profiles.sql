-- vchat-signal schema v2: device sessions (sign-in, push keys), profile edits, one localId per room.

-- One row per device a user acts from: a sign-in session (`session` = 1, `device` = the
-- server-made session id its token carries) or the `did` of an external token (push keys only).
CREATE TABLE devices (
    user_id     TEXT NOT NULL,
    device      TEXT NOT NULL,
    session     INTEGER NOT NULL DEFAULT 0,
    client_device_id TEXT,      -- what the SDK sent as deviceId (not unique across devices)
    platform    TEXT,
    language    TEXT,
    push_key    TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,           -- sessions: when their token runs out
    ended_at    TEXT,           -- sessions: logged out
    PRIMARY KEY (user_id, device)
);
CREATE INDEX devices_push_key ON devices (push_key) WHERE push_key IS NOT NULL;

-- Register-or-login is atomic on the identifier: the first sign-in claims it.
CREATE TABLE signin_identifiers (
    identifier  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL
);

-- A name or image set through the profile API is not overwritten by token claims.
ALTER TABLE users ADD COLUMN name_from_profile INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN img_from_profile INTEGER NOT NULL DEFAULT 0;

-- Replies and forwards name messages by localId: within a room it must name one message.
-- (Earlier versions allowed two senders to reuse one; keep the first, rename the rest.)
UPDATE messages SET local_id = local_id || '~' || seq
 WHERE seq NOT IN (SELECT MIN(seq) FROM messages GROUP BY room_id, local_id);
CREATE UNIQUE INDEX messages_room_local ON messages (room_id, local_id);
