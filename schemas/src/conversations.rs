//! Conversations: turns, feedback, and the exported question-answer pairs.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{QueryRewrite, SourceRef};

/// A user's judgement of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// A good answer: exported as fine-tuning data.
    Good,
    /// A bad answer.
    Bad,
}

/// Feedback on one turn, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Feedback {
    /// The rating.
    pub rating: Rating,
    /// What the user said about the answer, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was given (RFC 3339); later feedback replaces earlier.
    pub at: String,
}

/// One question and its answer in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationTurn {
    /// Turn number, from 1 in the order asked.
    pub turn: u32,
    /// The question as asked.
    pub question: String,
    /// What was searched for (the question, or its standalone rewrite).
    pub search_query: String,
    /// How the question was rewritten, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<QueryRewrite>,
    /// The answer.
    pub answer: String,
    /// False when nothing was found to ground an answer on.
    pub grounded: bool,
    /// The sources the answer cites.
    pub citations: Vec<SourceRef>,
    /// Sources given to the model that the answer does not cite.
    #[serde(default)]
    pub context: Vec<SourceRef>,
    /// Earlier turns given to the model with this question.
    #[serde(default)]
    pub history_turns_used: usize,
    /// When it was asked (RFC 3339).
    pub created_at: String,
    /// The user's rating, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

/// `GET /v1/conversations/{id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    /// Conversation id (`conv_` and 32 hex digits).
    pub id: String,
    /// The knowledge base it asks.
    pub kb: String,
    /// When the first question was asked (RFC 3339).
    pub created_at: String,
    /// When the last turn or feedback was recorded (RFC 3339).
    pub updated_at: String,
    /// Every turn, oldest first.
    pub turns: Vec<ConversationTurn>,
}

/// A conversation in a listing, without its turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// The knowledge base it asks.
    pub kb: String,
    /// When the first question was asked (RFC 3339).
    pub created_at: String,
    /// When the last turn or feedback was recorded (RFC 3339).
    pub updated_at: String,
    /// Number of turns.
    pub turns: u32,
    /// The start of its first question, to name it in a list; empty for conversations
    /// stored before titles were.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
}

/// `GET /v1/conversations?kb=` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    /// Conversations, most recently updated first.
    pub conversations: Vec<ConversationSummary>,
}

/// `POST /v1/conversations/{id}/feedback` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The turn rated: its `turn` number, from 1.
    pub turn: u32,
    /// `good` or `bad`.
    pub rating: Rating,
    /// Optional remark, up to 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A message of a chat fine-tuning record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatRecordMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// One line of `GET /v1/kbs/{kb}/export/qa.jsonl`: a turn rated good, as a chat
/// fine-tuning record (`messages`) with where its answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QaRecord {
    /// The chat as the model saw it (system prompt, the earlier turns it was given, the
    /// grounded question with its sources as their quoted sentences), then the answer.
    pub messages: Vec<ChatRecordMessage>,
    /// The sources the answer cites.
    pub citations: Vec<SourceRef>,
    /// The conversation the turn comes from.
    pub conversation_id: String,
    /// The turn's number in it.
    pub turn: u32,
}

/// Query of `GET /v1/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationListParams {
    /// Only the conversations of this knowledge base.
    pub kb: Option<String>,
}
