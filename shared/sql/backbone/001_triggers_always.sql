-- The immutability triggers fire even under session_replication_role = replica, which would
-- otherwise let a superuser's session skip them.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;
