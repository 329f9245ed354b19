-- The catalog of a scaled-out deployment: what the embedded catalog keeps in redb.
-- Records are the same JSON the embedded catalog stores; the columns beside them are
-- what queries select, order or lock by. Keys compare bytewise ("C"), as in redb, so
-- pages and orders are the same on both engines whatever the database's locale.

-- Knowledge bases: the index's record of each (embedder, dimension, current store), and a
-- generation that every change to the record or the KB's documents bumps, so a node
-- knows when what it cached of the KB is stale.
CREATE TABLE kbs (
    name       text COLLATE "C" PRIMARY KEY,
    record     jsonb  NOT NULL,
    generation bigint NOT NULL DEFAULT 1
);

CREATE TABLE documents (
    kb      text COLLATE "C" NOT NULL,
    id      text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    record  jsonb  NOT NULL,
    PRIMARY KEY (kb, id)
);

-- Versions only grow, across KBs and nodes: one sequence hands them out.
CREATE SEQUENCE document_versions;

-- A write or delete begun and not yet cleaned up (version 0: a deletion).
CREATE TABLE intents (
    kb          text COLLATE "C" NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (kb, document_id, version)
);

CREATE TABLE jobs (
    id          text COLLATE "C" PRIMARY KEY,
    kb          text    NOT NULL,
    created_at  text COLLATE "C" NOT NULL,
    finished    boolean NOT NULL,
    finished_at text COLLATE "C",
    record      jsonb   NOT NULL,
    -- The worker running the job, until when; a lease that ran out lets another worker
    -- take the job over (claimed with FOR UPDATE SKIP LOCKED).
    lease_owner   text,
    lease_expires timestamptz,
    -- Set by whichever node a client asked to cancel; the worker sees it when renewing.
    cancel_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX jobs_unfinished ON jobs (created_at, id) WHERE NOT finished;

CREATE TABLE job_files (
    job_id      text COLLATE "C" NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (job_id, document_id)
);
