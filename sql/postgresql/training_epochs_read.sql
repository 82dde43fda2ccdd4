-- The training table night by night, in night-key order as Python compares strings (byte order:
-- COLLATE "C"), so every reader of the stream sees the nights in the same order on both dialects.
-- {feature_columns} are validated identifiers from sunalgo's feature registry; {stage_codes} is one
-- "WHEN :stage_i THEN i" per sunalgo stage, so every column after night_id arrives as a number.
SELECT night_id, epoch, {feature_columns},
    CASE psg_stage {stage_codes} ELSE -1 END AS psg_stage_code,
    psg_respiratory_event
FROM training_epochs
ORDER BY night_id COLLATE "C", epoch;
