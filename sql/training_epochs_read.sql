-- The training table night by night, in night-key order (the model asset streams it and groups
-- rows by night). The primary key (night_id, epoch) gives this order without a sort.
-- {feature_columns} are validated identifiers from sunalgo's feature registry.
SELECT night_id, epoch, {feature_columns}, psg_stage, psg_respiratory_event
FROM training_epochs
ORDER BY night_id, epoch;
