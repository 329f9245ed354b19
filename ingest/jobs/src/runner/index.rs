//! The last stage: embedded files written to the KB and committed in groups, with their
//! job records.

use super::*;

/// Commits embedded files in groups: one store commit per group instead of per file.
pub(super) fn index(
    ctx: &Context,
    rx: Receiver<Message>,
    recorder: &mut dyn Recorder,
) -> Result<(), IndexError> {
    let mut works: Vec<Work> = Vec::new();
    let mut others: Vec<FileResult> = Vec::new();
    let mut ids: HashSet<DocumentId> = HashSet::new();
    let mut chunks = 0;
    let mut open = true;
    while open {
        let first = rx.recv();
        let mut next = first.map_err(|_| TryRecvError::Disconnected);
        loop {
            match next {
                Ok(Message::Embedded(embedded)) => {
                    for work in embedded {
                        // One version per document per commit: a second file with the same
                        // id waits for the next group.
                        if ids.contains(&work.input.document_id) {
                            commit(ctx, &mut works, &mut others, recorder)?;
                            ids.clear();
                            chunks = 0;
                        }
                        ids.insert(work.input.document_id.clone());
                        chunks += work.chunked.records.len();
                        works.push(work);
                    }
                }
                // The embedder forwards only finished files.
                Ok(Message::Work(_)) => {}
                Ok(Message::Done(result)) => others.push(*result),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
            if chunks >= ctx.settings.commit_chunks {
                break;
            }
            next = rx.try_recv();
        }
        if ctx.cancelled() {
            return Ok(());
        }
        commit(ctx, &mut works, &mut others, recorder)?;
        ids.clear();
        chunks = 0;
    }
    Ok(())
}

fn commit(
    ctx: &Context,
    works: &mut Vec<Work>,
    others: &mut Vec<FileResult>,
    recorder: &mut dyn Recorder,
) -> Result<(), IndexError> {
    if works.is_empty() && others.is_empty() {
        return Ok(());
    }
    let mut records: Vec<FileRecord> = others.iter().map(|r| r.record.clone()).collect();
    let mut writes = Vec::with_capacity(works.len());
    for work in works.iter_mut() {
        let Work {
            input,
            size,
            hash,
            previous,
            chunked,
            vectors,
            empty,
            ..
        } = work;
        let outcome = if previous.is_some() {
            DocumentOutcome::Updated
        } else {
            DocumentOutcome::Created
        };
        records.push(FileRecord {
            name: input.name.clone(),
            document_id: input.document_id.to_string(),
            bytes: *size,
            outcome: match empty {
                // Stored, so it is visible, but reported: nothing of it can be found.
                Some(e) => FileOutcome::Failed {
                    code: e.code().to_string(),
                    stage: e.stage().as_str().to_string(),
                    message: e.to_string(),
                },
                None => FileOutcome::Indexed {
                    chunks: chunked.records.len(),
                    outcome,
                },
            },
        });
        let records = std::mem::take(&mut chunked.records);
        writes.push(DocumentWrite {
            document: DocumentInfo {
                id: input.document_id.to_string(),
                name: input.name.clone(),
                chunks: records.len(),
                status: if empty.is_some() {
                    DocumentStatus::Empty
                } else {
                    DocumentStatus::Indexed
                },
                reason: empty.as_ref().map(ToString::to_string),
                ocr_pages: std::mem::take(&mut chunked.ocr_pages),
                format: Some(chunked.format.mime().to_string()),
                tags: input.tags.clone(),
                path: input.path.clone(),
                hash: hash.clone(),
                size: *size,
                version: 0,
                created_at: String::new(),
                updated_at: String::new(),
            },
            points: records.into_iter().zip(std::mem::take(vectors)).collect(),
        });
    }
    let mut results: Vec<FileResult> = std::mem::take(others);
    if writes.is_empty() {
        let extra = recorder.extra(&records);
        ctx.kb.record(&extra)?;
    } else {
        let extra = recorder.extra(&records);
        match ctx.kb.write(writes, extra) {
            Ok(stored) => {
                let indexed = records.split_off(results.len());
                for (record, document) in indexed.into_iter().zip(stored) {
                    results.push(FileResult {
                        record,
                        document: Some(document),
                    });
                }
            }
            Err(e) => {
                // The group's documents fail; what failed or was unchanged before is still
                // recorded, with the store error named on each indexed file.
                let e = IngestError::Index(e);
                for work in works.iter() {
                    results.push(failed(&work.input, work.size, &e));
                }
                let records: Vec<FileRecord> = results.iter().map(|r| r.record.clone()).collect();
                let extra = recorder.extra(&records);
                ctx.kb.record(&extra)?;
            }
        }
    }
    works.clear();
    recorder.committed(results);
    Ok(())
}
