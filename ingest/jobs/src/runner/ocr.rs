//! The OCR stage: documents whose images or scanned pages need reading, several at a
//! time, their pages spread over the process-wide OCR worker pool.

use super::*;

/// One task's outcome, sent back by an OCR worker: document, task, result.
type PageDone = (u64, usize, Result<RecognizedPage, OcrError>);

/// A document whose pages are with the OCR workers.
struct InOcr {
    scanned: Box<Scanned>,
    /// The PDF on disk for `pdftoppm`, written when its first page is handed out.
    pdf: Option<Arc<PdfFile>>,
    results: Vec<(usize, Result<RecognizedPage, OcrError>)>,
}

/// The OCR stage: hands the pages of scanned documents to the OCR pool, a few documents
/// at a time, and passes every other file straight on. A document moves on once all of
/// its pages are back, whatever became of each.
pub(super) struct OcrStage<'c, 'a> {
    ctx: &'c Context<'a>,
    on_ocr: &'c (dyn Fn(OcrProgress) + Sync),
    docs: HashMap<u64, InOcr>,
    next_id: u64,
    /// Pages not yet handed to the pool: (document, task).
    queue: VecDeque<(u64, usize)>,
    in_flight: usize,
    /// Set when the stage stops early; workers skip the pages still queued for it.
    abandoned: Arc<AtomicBool>,
    progress: OcrProgress,
    busy_since: Option<Instant>,
    busy: Duration,
}

impl<'c, 'a> OcrStage<'c, 'a> {
    pub(super) fn new(ctx: &'c Context<'a>, on_ocr: &'c (dyn Fn(OcrProgress) + Sync)) -> Self {
        Self {
            ctx,
            on_ocr,
            docs: HashMap::new(),
            next_id: 0,
            queue: VecDeque::new(),
            in_flight: 0,
            abandoned: Arc::new(AtomicBool::new(false)),
            progress: OcrProgress::default(),
            busy_since: None,
            busy: Duration::ZERO,
        }
    }

    /// Pages queued in the pool for this run: enough to keep every worker busy while
    /// results come back, few enough that a cancelled run leaves little behind.
    fn window(&self) -> usize {
        self.ctx
            .ocr
            .as_ref()
            .map_or(1, |ocr| ocr.config().workers * 2)
    }

    pub(super) fn run(mut self, rx: Receiver<Prepared>, out: SyncSender<Message>) {
        let (done_tx, done_rx) = channel::<PageDone>();
        let mut open = true;
        while self.step(&rx, &mut open, &done_tx, &done_rx, &out) {}
        // Whatever is still queued in the pool for this run is skipped.
        self.abandoned.store(true, Ordering::SeqCst);
    }

    /// One round: take in files, hand out pages, collect one result. False once done or
    /// when the run stops.
    fn step(
        &mut self,
        rx: &Receiver<Prepared>,
        open: &mut bool,
        done_tx: &std::sync::mpsc::Sender<PageDone>,
        done_rx: &Receiver<PageDone>,
        out: &SyncSender<Message>,
    ) -> bool {
        if self.ctx.cancelled() {
            return false;
        }
        if *open && self.queue.len() < self.window() {
            // Wait for input only when there is nothing else to wait for.
            let message = if self.docs.is_empty() {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match message {
                Ok(Prepared::Ready(message)) => {
                    if out.send(message).is_err() {
                        return false;
                    }
                }
                Ok(Prepared::Scanned(scanned)) => self.admit(scanned),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => *open = false,
            }
        }
        if !*open && self.docs.is_empty() {
            return false;
        }
        while self.in_flight < self.window() {
            let Some((doc, task)) = self.queue.pop_front() else {
                break;
            };
            self.dispatch(doc, task, done_tx);
        }
        if self.in_flight == 0 {
            return true;
        }
        // Short waits keep new files flowing in and cancellation prompt.
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok((doc, task, result)) => {
                self.in_flight -= 1;
                self.page_finished(result.is_err());
                self.record(doc, task, result, out)
            }
            Err(RecvTimeoutError::Timeout) => true,
            // The stage holds a sender itself, so this cannot happen.
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    fn admit(&mut self, scanned: Box<Scanned>) {
        let id = self.next_id;
        self.next_id += 1;
        let tasks = scanned.parsed.ocr.len();
        self.queue.extend((0..tasks).map(|task| (id, task)));
        self.progress.pages_total += tasks as u64;
        self.report();
        self.docs.insert(
            id,
            InOcr {
                scanned,
                pdf: None,
                results: Vec::with_capacity(tasks),
            },
        );
    }

    fn dispatch(&mut self, doc: u64, task: usize, done_tx: &std::sync::mpsc::Sender<PageDone>) {
        let Some(ocr) = self.ctx.ocr.clone() else {
            return;
        };
        let Some(entry) = self.docs.get_mut(&doc) else {
            return;
        };
        let source = entry.scanned.parsed.ocr[task].source.clone();
        if matches!(source, OcrSource::PdfPage { .. }) && entry.pdf.is_none() {
            match PdfFile::new(&entry.scanned.bytes) {
                Ok(pdf) => entry.pdf = Some(Arc::new(pdf)),
                Err(e) => {
                    // Counted as a page that went out and failed at once.
                    let _ = done_tx.send((doc, task, Err(e)));
                    self.started_page();
                    return;
                }
            }
        }
        let bytes = entry.scanned.bytes.clone();
        let name = entry.scanned.input.name.clone();
        let pdf = entry.pdf.clone();
        let parsers = self.ctx.parsers.clone();
        let done_tx = done_tx.clone();
        let abandoned = self.abandoned.clone();
        self.started_page();
        ocr.clone().spawn(move || {
            let result = if abandoned.load(Ordering::SeqCst) {
                Err(OcrError::Failed("the job stopped".into()))
            } else {
                let pool = parsers.as_deref();
                recognize(&ocr, pool, &name, &source, &bytes, pdf.as_deref())
            };
            let _ = done_tx.send((doc, task, result));
        });
    }

    fn started_page(&mut self) {
        self.in_flight += 1;
        self.busy_since.get_or_insert_with(Instant::now);
    }

    fn page_finished(&mut self, failed: bool) {
        self.progress.pages_done += 1;
        self.progress.pages_failed += u64::from(failed);
        if self.in_flight == 0
            && let Some(since) = self.busy_since.take()
        {
            self.busy += since.elapsed();
        }
        self.report();
    }

    fn report(&mut self) {
        let running = self.busy_since.map_or(Duration::ZERO, |s| s.elapsed());
        self.progress.busy_seconds = (self.busy + running).as_secs_f64();
        (self.on_ocr)(self.progress);
    }

    /// Files a page's result; a document whose pages are all back moves on.
    fn record(
        &mut self,
        doc: u64,
        task: usize,
        result: Result<RecognizedPage, OcrError>,
        out: &SyncSender<Message>,
    ) -> bool {
        let Some(entry) = self.docs.get_mut(&doc) else {
            return true;
        };
        if let Err(e) = &result {
            tracing::warn!(file = %entry.scanned.input.name, task, "OCR of a page failed: {e}");
        }
        entry.results.push((task, result));
        if entry.results.len() < entry.scanned.parsed.ocr.len() {
            return true;
        }
        let Some(entry) = self.docs.remove(&doc) else {
            return true;
        };
        out.send(self.finish(entry)).is_ok()
    }

    /// Merges a document's OCR text and chunks it, or records it as empty or failed.
    fn finish(&self, entry: InOcr) -> Message {
        let Scanned {
            input,
            size,
            hash,
            previous,
            mut parsed,
            ..
        } = *entry.scanned;
        let pages = match apply_ocr(&mut parsed, entry.results) {
            Ok(pages) => pages,
            Err((e, pages)) if e.is_empty_document() => {
                let format = parsed.format;
                let work = Work::empty(input, size, hash, previous, format, pages, e);
                return Message::Work(Box::new(work));
            }
            Err((e, _)) => return Message::Done(Box::new(failed(&input, size, &e))),
        };
        let chunked = chunk_parsed(
            &parsed,
            &input.name,
            &input.document_id,
            self.ctx.embedder.as_ref(),
            &self.ctx.settings.chunking,
            pages,
        );
        match chunked {
            Ok(chunked) => Message::Work(Box::new(Work {
                input,
                size,
                hash,
                // OCR had its own per-page limits; the file's limit covers the rest.
                started: Instant::now(),
                previous,
                chunked,
                vectors: Vec::new(),
                empty: None,
            })),
            Err(e) => Message::Done(Box::new(failed(&input, size, &e))),
        }
    }
}
