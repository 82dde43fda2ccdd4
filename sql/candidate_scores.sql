-- A candidate's rows in candidate_scores: replaced whole in one transaction, or dropped.
-- name: delete
DELETE FROM candidate_scores WHERE candidate = :candidate;
-- name: insert
INSERT INTO candidate_scores (candidate, night_id, model_version, score, value)
VALUES (:candidate, :night_id, :model_version, :score, :value);
