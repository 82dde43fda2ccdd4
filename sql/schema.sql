-- Warehouse tables whose shape does not depend on the feature registry (shared by SQLite and
-- PostgreSQL). Features arrive long (one row per night x epoch x feature): loading is a bulk append
-- (COPY on PostgreSQL), and the composite primary key, night_id first, is the index that both the
-- per-night replace (DELETE ... WHERE night_id = ?) and the pivot's join on (night_id, epoch) use.
-- No other index is needed: tests/test_postgres_warehouse.py asserts the EXPLAIN plans on 806k rows.
CREATE TABLE IF NOT EXISTS epoch_features_long (
    night_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    feature TEXT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (night_id, epoch, feature)
);

-- PSG labels per epoch (the truth the model trains on).
CREATE TABLE IF NOT EXISTS psg_epoch_labels (
    night_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    psg_stage TEXT,
    psg_respiratory_event SMALLINT NOT NULL,
    PRIMARY KEY (night_id, epoch)
);

-- Which column sets the generated tables were built with.
CREATE TABLE IF NOT EXISTS warehouse_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Candidates' scores, long (one row per candidate x night x score): a candidate's namespace in the
-- warehouse, beside production's night_scores and never mixed with it. The primary key, candidate
-- first, serves replacing or dropping a candidate and reading one side by side with production.
CREATE TABLE IF NOT EXISTS candidate_scores (
    candidate TEXT NOT NULL,
    night_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    score TEXT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (candidate, night_id, score)
);
