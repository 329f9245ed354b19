//! Streaming answers: the sinks an ask writes its sources and tokens to, as one JSON
//! response or as server-sent events, and the end of a stream whose client went away.

use super::*;

/// Marks a request's client as gone when the handler's future is dropped, which hyper does
/// when the connection closes before the response is sent.
pub(crate) struct GoneOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An answer collected whole for one JSON response.
pub(crate) struct JsonSink {
    pub(crate) gone: Arc<AtomicBool>,
}

impl AskSink for JsonSink {
    fn sources(&mut self, _: &AskSources) -> bool {
        !self.gone()
    }

    fn token(&mut self, _: &str) -> bool {
        !self.gone()
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

/// What a streamed answer sends, in order: sources, tokens, then done or error. `T` is
/// the finished answer: an [`AskResponse`] or a chat completion's
/// [`ChatOutcome`](zhiku_app::openai::ChatOutcome).
pub(crate) enum AskEvent<T> {
    Sources(AskSources),
    Token(String),
    Done(Box<T>),
    Failed(ServiceError),
}

/// An answer sent as events; the receiver is dropped with the response stream when the
/// client disconnects, which the sink reports as gone.
pub(crate) struct StreamSink<T> {
    events: mpsc::UnboundedSender<AskEvent<T>>,
}

impl<T> AskSink for StreamSink<T> {
    fn sources(&mut self, sources: &AskSources) -> bool {
        self.events.send(AskEvent::Sources(sources.clone())).is_ok()
    }

    fn token(&mut self, piece: &str) -> bool {
        self.events.send(AskEvent::Token(piece.to_string())).is_ok()
    }

    fn gone(&self) -> bool {
        self.events.is_closed()
    }
}

impl<T> AskEvent<T> {
    fn is_last(&self) -> bool {
        matches!(self, AskEvent::Done(_) | AskEvent::Failed(_))
    }
}

impl AskEvent<AskResponse> {
    pub(crate) fn into_sse(self) -> Event {
        let (name, data) = match self {
            AskEvent::Sources(sources) => ("sources", serde_json::to_value(sources)),
            AskEvent::Token(text) => ("token", serde_json::to_value(AskToken { text })),
            AskEvent::Done(response) => ("done", serde_json::to_value(response)),
            AskEvent::Failed(error) => ("error", serde_json::to_value(error_body(&error))),
        };
        let event = Event::default().event(name);
        match data {
            Ok(data) => event
                .json_data(data)
                .unwrap_or_else(|_| Event::default().event(name)),
            Err(_) => event,
        }
    }
}

/// Runs an answer on the blocking pool and waits for its first event. Until then the
/// response has not started, so a refusal (bad request, unknown KB or model, all slots
/// busy) is still a plain HTTP error with its status; after it, the events follow on the
/// receiver, ending with `Done` or `Failed`.
pub(crate) async fn start_stream<T: Send + 'static>(
    work: impl FnOnce(&mut StreamSink<T>) -> Result<T, ServiceError> + Send + 'static,
) -> Result<impl Stream<Item = AskEvent<T>>, ServiceError> {
    let (events, mut receiver) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let mut sink = StreamSink {
            events: events.clone(),
        };
        let last = match work(&mut sink) {
            Ok(done) => AskEvent::Done(Box::new(done)),
            Err(ServiceError::ClientGone) => return,
            Err(error) => AskEvent::Failed(error),
        };
        let _ = events.send(last);
    });
    let first = match receiver.recv().await {
        Some(AskEvent::Failed(error)) => return Err(error),
        Some(event) => event,
        None => return Err(ServiceError::Internal("the answer task ended early".into())),
    };
    Ok(futures_util::stream::unfold(
        (Some(first), Some(receiver)),
        |(pending, receiver)| async move {
            let mut receiver = receiver?;
            let event = match pending {
                Some(event) => event,
                None => receiver.recv().await?,
            };
            let next = (!event.is_last()).then_some(receiver);
            Some((event, (None, next)))
        },
    ))
}

/// Whether the client asked for Server-Sent Events: `"stream": true`, or an `Accept`
/// header naming `text/event-stream` (unless the body says `"stream": false`).
pub(crate) fn wants_events(request: &AskRequest, headers: &HeaderMap) -> bool {
    request.stream.unwrap_or_else(|| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/event-stream"))
    })
}
