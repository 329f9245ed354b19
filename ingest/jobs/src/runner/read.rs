//! The first stage: read a file, hash it, compare it with the stored version, parse and
//! chunk it under the file's time limit, or hand it to OCR.

use super::*;

/// Size and bytes of an opened file, `limit` bytes at most even should it grow while
/// it is read; errors name `path`.
fn read_file(
    path: &std::path::Path,
    file: std::io::Result<std::fs::File>,
    limit: u64,
) -> (u64, Result<Arc<[u8]>, IngestError>) {
    let read_error = |e: std::io::Error| IngestError::Read(format!("{}: {e}", path.display()));
    let too_large = |size| IngestError::TooLarge { size, limit };
    let (file, size) = match file.and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok((size, file)) => (file, size),
        Err(e) => return (0, Err(read_error(e))),
    };
    if size > limit {
        return (size, Err(too_large(size)));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    match std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes) {
        Ok(_) if bytes.len() as u64 > limit => (size, Err(too_large(bytes.len() as u64))),
        Ok(_) => (bytes.len() as u64, Ok(bytes.into())),
        Err(e) => (size, Err(read_error(e))),
    }
}

/// What parsing a file in its own thread produced.
enum Parsed {
    Chunked(ChunkedFile),
    Scanned(ParsedDocument),
}

impl Context<'_> {
    /// The file's size (as far as known) and its bytes.
    fn read(&self, input: &Input) -> (u64, Result<Arc<[u8]>, IngestError>) {
        let limit = self.settings.max_file_bytes;
        let too_large = |size| IngestError::TooLarge { size, limit };
        match &input.source {
            InputSource::Bytes(bytes) => {
                let size = bytes.len() as u64;
                if size > limit {
                    return (size, Err(too_large(size)));
                }
                (size, Ok(bytes.clone()))
            }
            InputSource::Path(path) => read_file(path, std::fs::File::open(path), limit),
            InputSource::Confined { path, root } => {
                read_file(path, open_confined(path, root), limit)
            }
        }
    }

    /// Read, hash, compare with the stored version, parse and chunk one file (or hand it
    /// to OCR).
    fn prepare(&self, input: Input) -> Prepared {
        let done = |result: FileResult| Prepared::Ready(Message::Done(Box::new(result)));
        let started = Instant::now();
        let (size, bytes) = self.read(&input);
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return done(failed(&input, size, &e)),
        };
        let ocr_relevant = detect_format(&input.name, input.content_type.as_deref(), &bytes)
            .is_ok_and(may_need_ocr);
        let hash = if ocr_relevant {
            content_hash(
                &bytes,
                &format!("{}/{}", self.fingerprint, self.ocr_fingerprint),
            )
        } else {
            content_hash(&bytes, &self.fingerprint)
        };
        let previous = match self.kb.document(&input.document_id) {
            Ok(previous) => previous,
            Err(e) => return done(failed(&input, size, &IngestError::Index(e))),
        };
        // New tags or a new path alone make the document change too: its chunks carry them.
        if let Some(doc) = &previous
            && doc.hash == hash
            && doc.status == DocumentStatus::Indexed
            && doc.tags == input.tags
            && doc.path == input.path
        {
            return done(FileResult {
                record: FileRecord {
                    name: input.name.clone(),
                    document_id: input.document_id.to_string(),
                    bytes: size,
                    outcome: FileOutcome::Unchanged,
                },
                document: previous,
            });
        }
        let chunking = Instant::now();
        let result = self.parse_with_timeout(&input, bytes.clone());
        tracing::debug!(
            file = %input.name,
            ms = chunking.elapsed().as_millis() as u64,
            "parsed"
        );
        match result {
            Ok(Parsed::Chunked(chunked)) => Prepared::Ready(Message::Work(Box::new(Work {
                input,
                size,
                hash,
                started,
                previous,
                chunked,
                vectors: Vec::new(),
                empty: None,
            }))),
            Ok(Parsed::Scanned(parsed)) => Prepared::Scanned(Box::new(Scanned {
                input,
                size,
                hash,
                previous,
                parsed,
                bytes,
            })),
            Err((e, format)) if e.is_empty_document() => {
                let work = Work::empty(input, size, hash, previous, format, Vec::new(), e);
                Prepared::Ready(Message::Work(Box::new(work)))
            }
            Err((e, _)) => done(failed(&input, size, &e)),
        }
    }

    /// Parsing (and chunking, unless OCR comes first) runs on its own thread so a
    /// pathological file cannot stall the job: after the time limit the file fails and the
    /// thread is abandoned (Rust threads cannot be killed; it ends when the parser does).
    /// Errors come with the detected format, which an `empty` document records.
    fn parse_with_timeout(
        &self,
        input: &Input,
        bytes: Arc<[u8]>,
    ) -> Result<Parsed, (IngestError, zhiku_parse::DocFormat)> {
        let (tx, rx) = sync_channel(1);
        let name = input.name.clone();
        let id = input.document_id.clone();
        let content_type = input.content_type.clone();
        let embedder = self.embedder.clone();
        let chunking = self.settings.chunking.clone();
        let options = self.settings.parse;
        let ocr = self.ocr.clone();
        let parsers = self.parsers.clone();
        // Any format will do for errors that record no document.
        let unknown = zhiku_parse::DocFormat::Text;
        std::thread::Builder::new()
            .name("zhiku-parse".into())
            .spawn(move || {
                let result = (|| {
                    let content_type = content_type.as_deref();
                    let pool = parsers.as_deref();
                    let mut parsed = parse_file(pool, &name, content_type, &bytes, &options)
                        .map_err(|e| (e, unknown))?;
                    let format = parsed.format;
                    let parsed = match &ocr {
                        Some(ocr) if !parsed.ocr.is_empty() => {
                            plan_ocr(&mut parsed, &name, &bytes, ocr, pool)
                                .map_err(|e| (e, format))?;
                            return Ok(Parsed::Scanned(parsed));
                        }
                        _ => without_ocr(parsed).map_err(|e| (e, format))?,
                    };
                    let chunked = chunk_parsed(
                        &parsed,
                        &name,
                        &id,
                        embedder.as_ref(),
                        &chunking,
                        Vec::new(),
                    )
                    .map_err(|e| (e, format))?;
                    Ok(Parsed::Chunked(chunked))
                })();
                let _ = tx.send(result);
            })
            .map_err(|e| {
                let e = IngestError::Read(format!("could not start a parser thread: {e}"));
                (e, unknown)
            })?;
        match rx.recv_timeout(self.settings.file_timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err((
                IngestError::Timeout {
                    stage: Stage::Parse,
                    seconds: self.settings.file_timeout.as_secs(),
                },
                unknown,
            )),
            Err(RecvTimeoutError::Disconnected) => Err((
                IngestError::Read("the parser stopped unexpectedly".to_string()),
                unknown,
            )),
        }
    }
}

pub(super) fn feed(ctx: &Context, inputs: impl Iterator<Item = Input>, out: SyncSender<Prepared>) {
    for input in inputs {
        if ctx.cancelled() {
            return;
        }
        if out.send(ctx.prepare(input)).is_err() {
            return;
        }
    }
}
