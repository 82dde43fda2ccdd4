-- The training table night by night, in night-key order as Python compares strings (byte order:
-- COLLATE "C"), so every reader of the stream sees the nights in the same order on both dialects.
-- {feature_columns} are validated identifiers from sunalgo's feature registry.
SELECT night_id, epoch, {feature_columns}, psg_stage, psg_respiratory_event
FROM training_epochs
ORDER BY night_id COLLATE "C", epoch;
