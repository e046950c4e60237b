-- SESSION_MAX_LIFETIME: the sweep that ends Supabase sessions past it
-- reads the live ones by age.
CREATE INDEX supabase_sessions_live_by_age ON supabase_sessions(created_at) WHERE ended_at IS NULL;
