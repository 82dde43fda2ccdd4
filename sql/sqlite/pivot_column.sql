-- One pivoted feature column on SQLite (no FILTER clause for aggregates before 3.30; CASE is portable).
-- {i}: index of the feature (its name is the bound parameter :feature_{i}); {column}: validated identifier.
MAX(CASE WHEN f.feature = :feature_{i} THEN f.value END) AS {column}
