//! The embedding stage: chunks to vectors in batches that may span several files.

use super::*;

/// Embeds chunks in batches of `embed_batch` that may span several files.
pub(super) fn embed(ctx: &Context, rx: Receiver<Message>, out: SyncSender<Message>) {
    let batch = ctx.settings.embed_batch.max(1);
    let timeout = ctx.settings.file_timeout;
    let mut pending: VecDeque<Box<Work>> = VecDeque::new();
    let mut open = true;
    loop {
        if ctx.cancelled() {
            return;
        }
        // Gather: block only when there is nothing to embed.
        while open {
            let message = if pending.is_empty() {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                let waiting: usize = pending
                    .iter()
                    .map(|w| w.chunked.records.len() - w.vectors.len())
                    .sum();
                if waiting >= batch {
                    break;
                }
                rx.try_recv()
            };
            match message {
                // Nothing to embed (an empty document): straight on to be recorded.
                Ok(Message::Work(work)) if work.chunked.records.is_empty() => {
                    if out.send(Message::Embedded(vec![*work])).is_err() {
                        return;
                    }
                }
                Ok(Message::Work(work)) => pending.push_back(work),
                Ok(done @ (Message::Done(_) | Message::Embedded(_))) => {
                    if out.send(done).is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if pending.is_empty() {
            return;
        }
        // Files past their time limit fail here rather than hold up the rest.
        let mut kept = VecDeque::with_capacity(pending.len());
        for work in pending.drain(..) {
            if work.started.elapsed() > timeout {
                let e = IngestError::Timeout {
                    stage: Stage::Embed,
                    seconds: timeout.as_secs(),
                };
                if out
                    .send(Message::Done(Box::new(failed(&work.input, work.size, &e))))
                    .is_err()
                {
                    return;
                }
            } else {
                kept.push_back(work);
            }
        }
        pending = kept;
        // Take the next `batch` chunks, front file first.
        let mut texts = Vec::with_capacity(batch);
        let mut owners = Vec::with_capacity(batch);
        'fill: for (slot, work) in pending.iter().enumerate() {
            for record in &work.chunked.records[work.vectors.len()..] {
                if texts.len() == batch {
                    break 'fill;
                }
                texts.push(embedding_input(record));
                owners.push(slot);
            }
        }
        if texts.is_empty() {
            continue;
        }
        match ctx.embedder.embed_passages(&texts) {
            Ok(vectors) => {
                for (slot, vector) in owners.into_iter().zip(vectors) {
                    pending[slot].vectors.push(vector);
                }
            }
            Err(e) => {
                // Fail every file that had chunks in the failed call.
                let e = IngestError::Embed(e);
                let slots: HashSet<usize> = owners.into_iter().collect();
                let mut kept = VecDeque::new();
                for (slot, work) in pending.drain(..).enumerate() {
                    if slots.contains(&slot) {
                        let result = failed(&work.input, work.size, &e);
                        if out.send(Message::Done(Box::new(result))).is_err() {
                            return;
                        }
                    } else {
                        kept.push_back(work);
                    }
                }
                pending = kept;
            }
        }
        // Files finished by the same call travel together, so the indexer can commit them
        // as one group: thousands of tiny files must not mean thousands of commits.
        let mut finished = Vec::new();
        while pending
            .front()
            .is_some_and(|w| w.vectors.len() == w.chunked.records.len())
        {
            finished.extend(pending.pop_front().map(|w| *w));
        }
        if !finished.is_empty() && out.send(Message::Embedded(finished)).is_err() {
            return;
        }
    }
}
