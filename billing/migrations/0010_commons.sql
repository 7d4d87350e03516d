-- The commons served: anonymous downloads from bulk routes, per file (the path
-- below the route's prefix) and UTC day, for the open books. Only counts are
-- kept: no address, account or time finer than the day. Written by the same
-- flush as usage_minutes, under the same batch id, so a retried flush adds
-- nothing here either.
CREATE TABLE commons_downloads (
    route     TEXT NOT NULL,
    dataset   TEXT NOT NULL,
    day       BIGINT NOT NULL,
    downloads BIGINT NOT NULL,
    bytes     BIGINT NOT NULL,
    PRIMARY KEY (route, dataset, day)
);
CREATE INDEX commons_downloads_day ON commons_downloads (day);
