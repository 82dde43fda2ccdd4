-- One row per night: sunalgo's clinical scores beside the same scores from the PSG, and agreement.
-- The score columns are generated from sunalgo's score list (identifiers validated).
CREATE TABLE IF NOT EXISTS night_scores (
    night_id TEXT PRIMARY KEY,
    sunalgo_version TEXT NOT NULL,
    model_version TEXT,
    {score_columns}
);
