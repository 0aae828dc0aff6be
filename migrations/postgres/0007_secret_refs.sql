-- Secret references of revisions (the PostgreSQL dialect; keep in step with
-- ../sqlite/0007_secret_refs.sql). A spec references secrets by name, following the
-- latest version or pinning one; the versions the followed names had when a revision was
-- created are kept with it, as a JSON object of name to version (`{"crm/db-password": 4}`),
-- so a rollback runs the versions that revision ran. Names and versions only: values live
-- in the secret store, encrypted.
ALTER TABLE revisions ADD COLUMN secret_versions_json TEXT NOT NULL DEFAULT '{}';
