-- One pivoted feature column on PostgreSQL: an aggregate FILTER.
-- {i}: index of the feature (its name is the bound parameter :feature_{i}); {column}: validated identifier.
MAX(f.value) FILTER (WHERE f.feature = :feature_{i}) AS {column}
