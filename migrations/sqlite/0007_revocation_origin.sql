-- Which revocations an operator made (`chronos user logout|remove`), so a
-- server that picks them up counts them as such
-- (chronos_sessions_ended_total{reason="operator"}).
ALTER TABLE revocations ADD COLUMN by_operator INTEGER NOT NULL DEFAULT 0;
