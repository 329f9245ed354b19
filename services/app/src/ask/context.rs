//! A question's conversation: the history the model may see, the standalone search query
//! of a follow-up, and the turn recorded once answered.

use super::*;

impl Services {
    /// Looks up the request's conversation (404 if it does not exist or belongs to
    /// another knowledge base: which one exists is not revealed), loads the turns the
    /// model may see, and rewrites a follow-up into a standalone search query. Without
    /// a conversation id a new conversation is started.
    pub fn conversation_context(
        &self,
        kb: &KbName,
        request: &AskRequest,
        question: &str,
        generator: &dyn Generator,
    ) -> Result<ConversationContext, ServiceError> {
        let config = &self.config.conversations;
        let Some(id) = &request.conversation_id else {
            return Ok(ConversationContext {
                id: new_id(),
                existing: false,
                store: true,
                history: Vec::new(),
                search_query: question.to_string(),
                rewrite: None,
            });
        };
        check_id(id)?;
        // At least the last turn, whose search query a follow-up continues.
        let wanted = config.history_turns.max(1);
        let (_, count, turns) = self
            .conversations
            .recent(id, wanted)?
            .filter(|(owner, ..)| owner == kb.as_str())
            .ok_or_else(|| not_found(id))?;
        // Refused before any work: the answer could not be stored.
        if count >= config.max_turns {
            return Err(full(id, config.max_turns));
        }
        let (search_query, rewrite) = match turns.last() {
            Some(previous) => rewrite::standalone(question, previous, config.rewrite, generator),
            None => (question.to_string(), None),
        };
        let skip = turns.len().saturating_sub(config.history_turns);
        let history = turns[skip..]
            .iter()
            .map(|t| HistoryTurn {
                question: t.question.clone(),
                answer: t.answer.clone(),
            })
            .collect();
        Ok(ConversationContext {
            id: id.clone(),
            existing: true,
            store: true,
            history,
            search_query,
            rewrite,
        })
    }

    /// The context of a question whose conversation the client sends along (earlier
    /// question/answer pairs, oldest first), as in the OpenAI chat API: rewritten like a
    /// stored conversation's follow-up, using at most `history_turns` of it, and not
    /// stored.
    pub fn inline_context(
        &self,
        question: &str,
        turns: &[HistoryTurn],
        generator: &dyn Generator,
    ) -> ConversationContext {
        let config = &self.config.conversations;
        let (search_query, rewrite) = match turns.last() {
            Some(previous) => {
                let previous = ConversationTurn {
                    turn: 0,
                    question: previous.question.clone(),
                    search_query: previous.question.clone(),
                    rewrite: None,
                    answer: previous.answer.clone(),
                    grounded: true,
                    citations: Vec::new(),
                    context: Vec::new(),
                    history_turns_used: 0,
                    created_at: String::new(),
                    feedback: None,
                };
                rewrite::standalone(question, &previous, config.rewrite, generator)
            }
            None => (question.to_string(), None),
        };
        let skip = turns.len().saturating_sub(config.history_turns);
        ConversationContext {
            id: String::new(),
            existing: false,
            store: false,
            history: turns[skip..].to_vec(),
            search_query,
            rewrite,
        }
    }

    /// Stores the answered question as the conversation's next turn (creating the
    /// conversation for its first); returns the turn's number, `None` when the
    /// conversation is not stored.
    pub fn record_turn(
        &self,
        kb: &KbName,
        question: &str,
        context: &ConversationContext,
        response: &AskResponse,
    ) -> Result<Option<u32>, ServiceError> {
        if !context.store {
            return Ok(None);
        }
        let source = |c: &Citation| SourceRef {
            index: c.index,
            document_id: c.document_id.clone(),
            document_name: c.document_name.clone(),
            chunk_id: c.chunk_id.clone(),
            quote: c.quote.clone(),
        };
        let turn = ConversationTurn {
            turn: 0,
            question: question.to_string(),
            search_query: response.search_query.clone(),
            rewrite: response.rewrite,
            answer: response.answer.clone(),
            grounded: response.grounded,
            citations: response.citations.iter().map(source).collect(),
            context: response.context.iter().map(source).collect(),
            history_turns_used: response.history_turns_used,
            created_at: now_rfc3339(),
            feedback: None,
        };
        let number = self.conversations.append(
            &context.id,
            kb,
            context.existing,
            self.config.conversations.max_turns,
            turn,
        )?;
        Ok(Some(number))
    }
}
