-- One row per night x epoch: one column per sunalgo feature, then the PSG labels.
-- The feature columns are generated from sunalgo's feature registry (identifiers validated).
CREATE TABLE IF NOT EXISTS training_epochs (
    night_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    {feature_columns},
    psg_stage TEXT,
    psg_respiratory_event SMALLINT NOT NULL,
    PRIMARY KEY (night_id, epoch)
);
