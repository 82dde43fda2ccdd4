-- Pivot the long features of one night to one column per feature and join the PSG labels, in SQL.
-- Every PSG epoch gets a row (LEFT JOIN): epochs the sensor did not cover have NULL features.
-- {pivot_columns} is one aggregate per feature, from <dialect>/pivot_column.sql: CASE on SQLite,
-- FILTER (WHERE ...) on PostgreSQL. Feature names are bound parameters, column names validated
-- identifiers; nothing from the data is ever formatted into the statement.
-- Indexes: psg_epoch_labels' primary key (night_id, epoch) finds the night's labels; the primary key
-- of epoch_features_long (night_id, epoch, feature) serves the join on (night_id, epoch).
INSERT INTO training_epochs (night_id, epoch, {feature_columns}, psg_stage, psg_respiratory_event)
SELECT
    l.night_id,
    l.epoch,
    {pivot_columns},
    l.psg_stage,
    l.psg_respiratory_event
FROM psg_epoch_labels AS l
LEFT JOIN epoch_features_long AS f
    ON f.night_id = l.night_id AND f.epoch = l.epoch
WHERE l.night_id = :night_id
GROUP BY l.night_id, l.epoch, l.psg_stage, l.psg_respiratory_event;
