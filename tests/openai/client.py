"""Drives zhiku's OpenAI-compatible API with the official `openai` client library.

Usage: client.py BASE_URL KB LLM EMBEDDER. Prints one JSON object with what it saw; the
Rust test (tests/tests/openai_api.rs) checks it. Any exception fails the run (exit 1).
"""

import json
import sys

import openai

base_url, kb, llm, embedder = sys.argv[1:5]
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-needed-without-keys", max_retries=0)
out = {}

models = client.models.list()
out["models"] = [m.id for m in models.data]

question = "When does the nightly backup run?"
completion = client.chat.completions.create(
    model=f"kb:{kb}",
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=40,
)
out["kb_completion"] = {
    "id": completion.id,
    "object": completion.object,
    "content": completion.choices[0].message.content,
    "role": completion.choices[0].message.role,
    "finish_reason": completion.choices[0].finish_reason,
    "usage": completion.usage.model_dump(),
    # Our extra fields, which the client keeps as extras.
    "citations": (completion.model_extra or {}).get("citations", []),
    "context": (completion.model_extra or {}).get("context", []),
}

stream = client.chat.completions.create(
    model=f"kb:{kb}",
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=40,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
out["kb_stream"] = {
    "objects": sorted({c.object for c in chunks}),
    "ids": sorted({c.id for c in chunks}),
    "content": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "first_role": chunks[0].choices[0].delta.role,
    "first_citations": (chunks[0].model_extra or {}).get("citations"),
    "finish_reasons": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
    "last_choices": len(chunks[-1].choices),
}

# A follow-up: the conversation rides in the messages.
follow_up = client.chat.completions.create(
    model=f"kb:{kb}",
    messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": completion.choices[0].message.content},
        {"role": "user", "content": "Where does it copy the database to?"},
    ],
    temperature=0,
    max_tokens=40,
)
out["follow_up"] = {
    "content": follow_up.choices[0].message.content,
    "search_query": (follow_up.model_extra or {}).get("search_query"),
}

bare = client.chat.completions.create(
    model=llm,
    messages=[{"role": "user", "content": "Say hello."}],
    temperature=0,
    max_tokens=12,
)
out["bare"] = {
    "content": bare.choices[0].message.content,
    "has_citations": "citations" in (bare.model_extra or {}),
}

structured = client.chat.completions.create(
    model=f"kb:{kb}",
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=80,
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "when",
            "schema": {
                "type": "object",
                "properties": {"time": {"type": "string", "maxLength": 40}},
                "required": ["time"],
                "additionalProperties": False,
            },
        },
    },
)
out["structured"] = json.loads(structured.choices[0].message.content)

# The client asks for base64 by default and decodes it; floats on request.
emb = client.embeddings.create(model=embedder, input=["nightly backup", "夜间备份"])
floats = client.embeddings.create(model=embedder, input="nightly backup", encoding_format="float")
out["embeddings"] = {
    "count": len(emb.data),
    "dims": [len(d.embedding) for d in emb.data],
    "indexes": [d.index for d in emb.data],
    "same_as_float": max(abs(a - b) for a, b in zip(emb.data[0].embedding, floats.data[0].embedding)),
    "norm": sum(x * x for x in floats.data[0].embedding),
    "usage": emb.usage.model_dump(),
}

errors = {}
try:
    client.chat.completions.create(model="kb:no-such-kb", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as e:
    errors["unknown_kb"] = e.status_code
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as e:
    errors["unknown_model"] = e.status_code
try:
    client.chat.completions.create(model=llm, messages=[{"role": "user", "content": "hi"}], n=2)
except openai.BadRequestError as e:
    errors["n2"] = e.status_code
try:
    client.embeddings.create(model="text-embedding-3-small", input="x")
except openai.NotFoundError as e:
    errors["unknown_embedder"] = e.status_code
out["errors"] = errors

print(json.dumps(out, ensure_ascii=False))
