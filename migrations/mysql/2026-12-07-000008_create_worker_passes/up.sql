-- The worker passes running now, each with its start: a pass does not do again an account
-- that a worker acted for since the earliest pass running when it began, so workers started
-- together do each account once whatever --older-than says. A pass renews its row while it
-- claims; the row of a worker that died is ignored once alive_until has passed.
CREATE TABLE worker_passes (
    pass_id     VARCHAR(255) NOT NULL PRIMARY KEY,
    started_at  DATETIME(6)  NOT NULL,
    alive_until DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
