-- night_scores made before rows named their model gain the column (NULL until the night's gold re-runs).
ALTER TABLE night_scores ADD COLUMN model_version TEXT;
