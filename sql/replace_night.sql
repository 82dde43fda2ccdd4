-- Per-night deletes that make every load idempotent; each runs inside the night's transaction.
-- name: delete_features
DELETE FROM epoch_features_long WHERE night_id = :night_id;
-- name: delete_labels
DELETE FROM psg_epoch_labels WHERE night_id = :night_id;
-- name: delete_training
DELETE FROM training_epochs WHERE night_id = :night_id;
-- name: delete_scores
DELETE FROM night_scores WHERE night_id = :night_id;
-- name: delete_candidate_scores
DELETE FROM candidate_scores WHERE night_id = :night_id;
