-- Conversations and the ratings of their answers, shared by every API node.

CREATE TABLE conversations (
    id         text COLLATE "C" PRIMARY KEY,
    kb         text COLLATE "C" NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL,
    turns      integer NOT NULL,
    title      text    NOT NULL
);
CREATE INDEX conversations_by_kb ON conversations (kb, created_at, id);
CREATE INDEX conversations_by_update ON conversations (updated_at);

-- One row per turn, so a turn is appended or rated without rewriting the conversation.
CREATE TABLE conversation_turns (
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn            integer NOT NULL,
    record          jsonb   NOT NULL,
    PRIMARY KEY (conversation_id, turn)
);
