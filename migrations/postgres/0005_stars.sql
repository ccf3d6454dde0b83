-- Messages a member starred (per member: nobody else sees their stars).
CREATE TABLE message_stars (
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX message_stars_user ON message_stars (user_id, created_at);
