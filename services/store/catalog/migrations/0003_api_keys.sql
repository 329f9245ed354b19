-- API keys (salted hashes, never secrets), shared by every API node.

CREATE TABLE api_keys (
    id     text COLLATE "C" PRIMARY KEY,
    -- Listed in the order they were created, as the key file lists them.
    seq    bigserial NOT NULL,
    record jsonb NOT NULL
);

-- Bumped by every change to api_keys, so a node rereads the keys only when they changed
-- (and sees a revocation on its next request).
CREATE TABLE api_keys_generation (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    value bigint  NOT NULL
);
INSERT INTO api_keys_generation VALUES (true, 0);
