-- vchat-signal schema v1. Times are ISO-8601 UTC strings with milliseconds (sortable as text).

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    full_name   TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    img         TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    last_seen_at TEXT
);
CREATE INDEX users_identifier ON users (identifier, updated_at);

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('s', 'g')),
    title       TEXT NOT NULL DEFAULT '',
    img         TEXT NOT NULL DEFAULT '',
    -- single rooms only: the two user ids, sorted, so one pair has one room
    pair_key    TEXT UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE room_members (
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    joined_at   TEXT NOT NULL,
    -- receipts watermarks: highest message seq this member has had delivered / has seen
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    seen_seq    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE TABLE messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    sender_id   TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    sender_identifier TEXT NOT NULL,
    sender_img  TEXT NOT NULL,
    platform    TEXT NOT NULL DEFAULT 'other',
    local_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    content     TEXT NOT NULL,
    is_encrypted INTEGER NOT NULL DEFAULT 0,
    attachment  TEXT,           -- JSON or NULL
    reply_to    TEXT,           -- JSON snapshot of the replied message or NULL
    forward_id  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    delivered_at TEXT,          -- single rooms: when the peer got it
    seen_at     TEXT,           -- single rooms: when the peer saw it
    deleted_at  TEXT,           -- deleted for everyone
    UNIQUE (sender_id, local_id)
);
CREATE INDEX messages_room_seq ON messages (room_id, seq);

CREATE TABLE message_hidden (
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

CREATE TABLE bans (
    banner_id   TEXT NOT NULL,
    banned_id   TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (banner_id, banned_id)
);
CREATE INDEX bans_banned ON bans (banned_id);

CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    caller_id   TEXT NOT NULL,
    callee_id   TEXT NOT NULL,
    caller_device TEXT NOT NULL,
    callee_device TEXT,
    with_video  INTEGER NOT NULL,
    platform    TEXT NOT NULL,
    status      TEXT NOT NULL,
    payload     TEXT NOT NULL,  -- the offer exactly as received, as JSON text
    answer      TEXT,           -- the answer exactly as received, as JSON text
    rev         INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    accepted_at TEXT,
    ended_at    TEXT
);
CREATE INDEX calls_caller ON calls (caller_id, created_at);
CREATE INDEX calls_callee ON calls (callee_id, created_at);
CREATE INDEX calls_live ON calls (status) WHERE status IN ('ring', 'inCall');

CREATE TABLE call_hidden (
    call_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    PRIMARY KEY (call_id, user_id)
);
