-- Bulk loads of one night on PostgreSQL: COPY (text format) from the client, inside the night's
-- transaction (after its DELETE), so a reader sees the old night or the new one.
-- name: features
COPY epoch_features_long (night_id, epoch, feature, value) FROM STDIN;
-- name: labels
COPY psg_epoch_labels (night_id, epoch, psg_stage, psg_respiratory_event) FROM STDIN;
