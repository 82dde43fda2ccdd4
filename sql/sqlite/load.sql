-- Bulk loads of one night on SQLite: executemany of prepared inserts, inside the night's transaction.
-- name: features
INSERT INTO epoch_features_long (night_id, epoch, feature, value) VALUES (:night_id, :epoch, :feature, :value);
-- name: labels
INSERT INTO psg_epoch_labels (night_id, epoch, psg_stage, psg_respiratory_event) VALUES (:night_id, :epoch, :psg_stage, :psg_respiratory_event);
