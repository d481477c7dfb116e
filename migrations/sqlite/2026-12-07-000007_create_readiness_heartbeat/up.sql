-- One row that `/readyz` updates (a committed write) when no real write has told it lately
-- whether the database takes writes: a rolled-back insert never reaches the disk, so a full
-- disk or a read-only file would pass it while sign-ins fail.
CREATE TABLE readiness_heartbeat (
    id      INTEGER   NOT NULL PRIMARY KEY,
    beat_at TIMESTAMP NOT NULL,
    beats   BIGINT    NOT NULL
);
INSERT INTO readiness_heartbeat (id, beat_at, beats) VALUES (1, '1970-01-01 00:00:00', 0);
