-- Warehouse tables whose shape does not depend on the feature registry.
-- Features arrive long (one row per night x epoch x feature): loading is a bulk append, and the
-- composite primary key is the index that both the per-night replace and the pivot use.
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
