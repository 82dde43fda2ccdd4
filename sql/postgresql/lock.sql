-- Transaction-scoped advisory locks on PostgreSQL: concurrent runs replacing the same night of the
-- same table queue up instead of colliding on the primary key; schema changes run one at a time.
-- name: night
SELECT pg_advisory_xact_lock(hashtextextended(:lock_key, 0));
-- name: schema
SELECT pg_advisory_xact_lock(hashtextextended('sunrise-warehouse-schema', 0));
