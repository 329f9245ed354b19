-- When each intent was recorded. On a shared catalog an intent far older than any write
-- takes is the leftover of a node that died mid-write; any node may then remove the
-- chunks it left (KnowledgeBase::collect_stale).
ALTER TABLE intents ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
