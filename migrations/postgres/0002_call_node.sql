-- The node that owns a live call (runs its timers and judges its transitions). A live call
-- whose node stopped beating is claimed by a live one.
ALTER TABLE calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
