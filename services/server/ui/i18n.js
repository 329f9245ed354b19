// Every visible string of the web UI and the API reference, in English and Simplified
// Chinese. Markup names its strings with data-i18n (text) and data-i18n-attr
// ("attr:key;attr:key"); scripts call t() and tn() (counted nouns).

import { zh } from './i18n-zh.js';

const LANG_STORAGE = 'zhiku.lang';

const en = {
  'app.title': 'zhiku — knowledge base',
  'app.name': 'zhiku',
  'app.skip': 'Skip to content',
  'app.currentKb': 'Knowledge base:',
  'app.noKb': 'none selected',
  'lang.label': 'Language',
  'lang.en': 'English',
  'lang.zh': '简体中文',
  'nav.label': 'Sections',
  'nav.kbs': 'Knowledge bases',
  'nav.upload': 'Upload',
  'nav.documents': 'Documents',
  'nav.search': 'Search',
  'nav.ask': 'Ask',
  'nav.models': 'Models',
  'nav.docs': 'API reference',
  'message.close': 'Dismiss message',

  'common.refresh': 'Refresh',
  'common.delete': 'Delete',
  'common.close': 'Close',
  'common.default': 'default',
  'common.serverDefault': 'Server default',
  'common.commaSeparated': 'comma-separated',
  'common.needsKb': 'Select a knowledge base first (under “Knowledge bases”).',

  'err.unauthorized': 'The API key is missing or wrong.',
  'err.forbidden': 'This key may not do that.',
  'err.network': 'The server cannot be reached.',
  'err.aborted': 'Stopped.',

  'key.label': 'API key',
  'key.placeholder': 'zk_…',
  'key.save': 'Use key',
  'key.accepted': 'Key accepted: {scope}.',
  'key.acceptedKb': 'Key accepted: {scope}, knowledge base “{kb}”.',
  'scope.open': 'open access',
  'scope.admin': 'admin',
  'scope.read': 'read only',
  'scope.write': 'read and write',
  'scope.badgeKb': '{scope} · {kb}',
  'scope.open.help': 'The server runs without API keys: everything is allowed.',
  'scope.admin.help': 'This key may do everything.',
  'scope.read.help': 'This key may search and ask, but not change anything.',
  'scope.write.help': 'This key may upload and delete in its knowledge bases.',
  'access.readOnly': 'This key may only read this knowledge base: uploading is not available.',

  'kbs.title': 'Knowledge bases',
  'kbs.newName': 'New knowledge base',
  'kbs.nameHint': '1–64 characters: a–z, 0–9, _ and -',
  'kbs.create': 'Create',
  'kbs.empty': 'No knowledge bases yet.',
  'kbs.documents.one': '{n} document',
  'kbs.documents.other': '{n} documents',
  'kbs.chunks.one': '{n} chunk',
  'kbs.chunks.other': '{n} chunks',
  'kbs.embedder': 'Embedder {name}, {dim} dimensions',
  'kbs.select': 'Select',
  'kbs.selected': 'Selected',
  'kbs.selectLabel': 'Work with knowledge base {name}',
  'kbs.deleteLabel': 'Delete knowledge base {name}',
  'kbs.confirmDelete': 'Delete the knowledge base “{name}” with all its documents, indexes and conversations? This cannot be undone.',
  'kbs.created': 'Knowledge base “{name}” created.',
  'kbs.exists': 'Knowledge base “{name}” already exists; it is now selected.',
  'kbs.deleted': 'Knowledge base “{name}” deleted.',
  'kbs.nameRequired': 'Enter a name for the new knowledge base.',

  'upload.title': 'Upload',
  'upload.into': 'Into knowledge base:',
  'upload.drop': 'Drop files or folders here, or choose them:',
  'upload.files': 'Choose files…',
  'upload.folder': 'Choose a folder…',
  'upload.clear': 'Clear selection',
  'upload.tags': 'Tags',
  'upload.tagsHint': 'Comma-separated, applied to every file.',
  'upload.start': 'Upload',
  'upload.cancel': 'Cancel',
  'upload.progress': 'Upload progress',
  'upload.failures': 'Files that failed',
  'upload.noFailures': 'None.',
  'upload.nothingSelected': 'No files chosen yet.',
  'upload.selected': '{files} chosen ({size}).',
  'upload.nFiles.one': '{n} file',
  'upload.nFiles.other': '{n} files',
  'upload.sent': '{sent} of {total} sent',
  'upload.filesDone': '{done} / {total} files',
  'upload.chunks.one': '{n} chunk',
  'upload.chunks.other': '{n} chunks',
  'upload.rate': '{files} files/s, {chunks} chunks/s',
  'upload.eta': 'about {eta} left',
  'upload.outcomes': '{indexed} indexed, {unchanged} unchanged',
  'upload.failedCount.one': '{n} failed',
  'upload.failedCount.other': '{n} failed',
  'upload.ocr': 'OCR {done} / {total} pages',
  'upload.queued': 'Upload of {files} received; indexing.',
  'upload.done': 'Upload finished: {indexed} indexed, {unchanged} unchanged.',
  'upload.doneWithFailures': 'Upload finished: {indexed} indexed, {unchanged} unchanged, {failed} failed (see below).',
  'upload.cancelled': 'Upload cancelled; documents already indexed stay.',
  'upload.failed': 'The upload failed.',
  'upload.failedMessage': 'The upload failed: {message}',
  'job.uploading': 'Sending files…',
  'job.queued': 'Queued',
  'job.running': 'Indexing…',
  'job.succeeded': 'Finished',
  'job.failed': 'Failed',
  'job.cancelled': 'Cancelled',
  'stage.read': 'reading',
  'stage.parse': 'parsing',
  'stage.ocr': 'OCR',
  'stage.chunk': 'chunking',
  'stage.embed': 'embedding',
  'stage.index': 'indexing',

  'docs.title': 'Documents',
  'docs.col.name': 'Name / path',
  'docs.col.status': 'Status',
  'docs.col.format': 'Format',
  'docs.col.chunks': 'Chunks',
  'docs.col.ocr': 'OCR pages · confidence',
  'docs.col.tags': 'Tags',
  'docs.col.updated': 'Updated',
  'docs.col.actions': 'Actions',
  'docs.empty': 'No documents in this knowledge base.',
  'docs.more': 'Load more',
  'docs.count.one': '{n} document',
  'docs.count.other': '{n} documents',
  'docs.countMore': 'First {n} documents',
  'docs.id': 'id: {id}',
  'docs.page': 'p. {page}',
  'docs.words.one': '{n} word',
  'docs.words.other': '{n} words',
  'docs.ocrPages.one': '{n} page',
  'docs.ocrPages.other': '{n} pages',
  'docs.ocrConfidence': 'mean {value}%',
  'docs.ocrFailed.one': '{n} failed',
  'docs.ocrFailed.other': '{n} failed',
  'docs.reupload': 'Re-upload',
  'docs.reuploadLabel': 'Upload a new version of {name}',
  'docs.reuploading': 're-uploading…',
  'docs.reuploadStarted': 'Uploading a new version of “{name}”…',
  'docs.reuploaded': 'New version of “{name}” indexed.',
  'docs.reuploadFailed': 'New version of “{name}” failed: {message}',
  'docs.deleteLabel': 'Delete document {name}',
  'docs.confirmDelete': 'Delete the document “{name}” and its chunks?',
  'docs.deleted': 'Document “{name}” deleted.',
  'docStatus.indexed': 'indexed',
  'docStatus.empty': 'empty',
  'docStatus.damaged': 'damaged',

  'search.title': 'Search playground',
  'search.query': 'Query',
  'search.run': 'Search',
  'search.mode': 'Mode',
  'search.mode.hybrid': 'Hybrid',
  'search.mode.dense': 'Dense (vectors)',
  'search.mode.keyword': 'Keyword (BM25)',
  'search.fusion': 'Fusion',
  'search.fusion.rrf': 'Reciprocal rank (RRF)',
  'search.fusion.weighted': 'Weighted',
  'search.alpha': 'Alpha (dense weight)',
  'search.alphaHint': 'For weighted fusion, 0 to 1.',
  'search.topK': 'Hits (top_k)',
  'search.expand': 'Neighbours per side',
  'search.translate': 'Also search the query translated into the other language',
  'search.filters': 'Filters',
  'search.tags': 'Tags',
  'search.pathPrefix': 'Path prefix',
  'search.mimeTypes': 'MIME types',
  'search.documentIds': 'Document ids',
  'search.emptyQuery': 'Enter a query.',
  'search.hits.one': '{n} hit',
  'search.hits.other': '{n} hits',
  'search.noRelevant': 'nothing relevant found',
  'search.translated': 'also searched: “{query}”',
  'search.score': 'score',
  'search.dense': 'dense',
  'search.keyword': 'keyword',
  'search.ocr': 'OCR',
  'search.ocrConfidence': 'OCR {value}%',
  'search.neighbors.one': '{n} neighbouring chunk',
  'search.neighbors.other': '{n} neighbouring chunks',

  'ask.title': 'Ask',
  'ask.conversations': 'Conversations',
  'ask.new': 'New conversation',
  'ask.noConversations': 'No conversations yet.',
  'ask.export': 'Export rated Q&A (JSONL)',
  'ask.exported.one': 'Exported {n} rated answer.',
  'ask.exported.other': 'Exported {n} rated answers.',
  'ask.exportedNone': 'No answer has been rated good yet; the export is empty.',
  'ask.transcript': 'Earlier turns',
  'ask.you': 'You:',
  'ask.question': 'Question',
  'ask.enterHint': 'Enter sends; Shift+Enter starts a new line.',
  'ask.send': 'Ask',
  'ask.stop': 'Stop',
  'ask.advanced': 'Advanced',
  'ask.mode': 'Answer mode',
  'ask.mode.generative': 'Generative',
  'ask.mode.extractive': 'Extractive (quotes only)',
  'ask.mode.auto': 'Auto',
  'ask.temperature': 'Temperature',
  'ask.maxTokens': 'Max tokens',
  'ask.topK': 'Sources (top_k)',
  'ask.costar': 'Persona and CO-STAR prompt',
  'ask.sources': 'Sources',
  'ask.cited': 'cited',
  'ask.rate': 'Rate this answer',
  'ask.good': 'Good answer',
  'ask.bad': 'Bad answer',
  'ask.ratedGood': 'Thanks: marked as a good answer.',
  'ask.ratedBad': 'Thanks: marked as a bad answer.',
  'ask.rewrite': 'Searched for: “{query}” {how}',
  'ask.rewriteBy.model': '(rewritten by the model)',
  'ask.rewriteBy.keywords': '(rewritten with keywords)',
  'ask.madeBy.generative': 'generated',
  'ask.madeBy.extractive': 'extracted quotes',
  'ask.madeBy.auto': 'auto',
  'ask.sourcesUsed.one': '{n} source given',
  'ask.sourcesUsed.other': '{n} sources given',
  'ask.sourcesDropped.one': '{n} left out for room',
  'ask.sourcesDropped.other': '{n} left out for room',
  'ask.historyUsed.one': '{n} earlier turn used',
  'ask.historyUsed.other': '{n} earlier turns used',
  'ask.translated': 'also searched: “{query}”',
  'ask.firstToken': 'first token {ms} ms',
  'ask.tokPerSec': '{n} tokens/s',
  'ask.total': 'total {ms} ms',
  'ask.cutShort': 'cut short by max tokens',
  'ask.notGrounded': 'nothing relevant was found in the knowledge base',
  'ask.followUp': 'Follow-up in this conversation ({turns})',
  'ask.newConversation': 'A new conversation starts with this question',
  'ask.turns.one': '{n} turn',
  'ask.turns.other': '{n} turns',
  'ask.untitled': 'Conversation',
  'ask.deleteLabel': 'Delete conversation {name}',
  'ask.confirmDelete': 'Delete the conversation “{name}” with its feedback?',
  'ask.deleted': 'Conversation deleted.',
  'ask.emptyQuestion': 'Type a question first.',
  'ask.stopped': 'Answer stopped.',
  'ask.failed': 'The answer failed.',
  'ask.streamEnded': 'The answer stream ended before the answer was complete.',

  'costar.persona': 'Persona',
  'costar.persona.ph': 'e.g. a customer-support lead',
  'costar.context': 'Context',
  'costar.context.ph': 'Background the model should know',
  'costar.objective': 'Objective',
  'costar.objective.ph': 'What the answer should achieve',
  'costar.style': 'Style',
  'costar.style.ph': 'e.g. plain and brief',
  'costar.tone': 'Tone',
  'costar.tone.ph': 'e.g. friendly',
  'costar.audience': 'Audience',
  'costar.audience.ph': 'e.g. new employees',
  'costar.responseFormat': 'Response format',
  'costar.responseFormat.ph': 'e.g. a numbered list',

  'cite.title': 'Source [{n}]',
  'cite.document': 'Document',
  'cite.heading': 'Section',
  'cite.page': 'Page',
  'cite.passage': 'Whole passage',
  'cite.chipLabel': 'Source {n}: {name}',

  'models.title': 'Models',
  'models.role.llm': 'language model',
  'models.role.embedder': 'embedding model',
  'models.role.knowledge_base': 'knowledge base',
  'models.id': 'Model id',
  'models.engine': 'Engine',
  'models.parameters': 'Parameters',
  'models.quantization': 'Quantization',
  'models.contextLength': 'Trained context',
  'models.contextWindow': 'Context window',
  'models.dimension': 'Vector dimension',
  'models.chatTemplate': 'Chat template',
  'models.fileSize': 'File size',
  'models.path': 'File',
  'models.created': 'Created',
  'models.slots': 'Generation slots',
  'models.slotsValue': '{busy} / {parallel} busy, {queued} / {queue} waiting ({admitted} served, {rejected} refused)',
  'models.kbModels': 'Knowledge bases as chat models',
  'models.kbModelsHint': 'OpenAI-compatible clients can name these in “model” to get answers from a knowledge base.',

  'tok.title': 'Tokenizer',
  'tok.text': 'Text',
  'tok.run': 'Tokenize',
  'tok.tokens': 'LLM tokens',
  'tok.words': 'Keyword index words',
  'tok.id': 'token id {id}',
  'tok.empty': 'Type some text to tokenize.',
  'tok.tokenCount.one': '{n} token',
  'tok.tokenCount.other': '{n} tokens',
  'tok.wordCount.one': '{n} word',
  'tok.wordCount.other': '{n} words',

  'confirm.title': 'Are you sure?',
  'confirm.ok': 'Delete',
  'confirm.cancel': 'Cancel',

  'time.hm': '{h} h {m} min',
  'time.ms': '{m} min {s} s',
  'time.s': '{s} s',
};

const STRINGS = { en, zh };

function initialLang() {
  try {
    const saved = localStorage.getItem(LANG_STORAGE);
    if (saved === 'en' || saved === 'zh') return saved;
  } catch {
    /* no storage: follow the browser */
  }
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return wanted.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

let lang = initialLang();

export function getLang() {
  return lang;
}

/** The BCP 47 tag for Intl and `<html lang>`. */
export function locale() {
  return lang === 'zh' ? 'zh-CN' : 'en';
}

export function setLang(next) {
  lang = next === 'zh' ? 'zh' : 'en';
  try {
    localStorage.setItem(LANG_STORAGE, lang);
  } catch {
    /* the choice then lasts for this page */
  }
}

function fill(text, vars) {
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** The string `key` in the current language (English when missing), with {vars} filled. */
export function t(key, vars) {
  const text = STRINGS[lang][key] ?? en[key];
  if (text === undefined) {
    console.warn(`i18n: no string ${key}`);
    return key;
  }
  return fill(text, vars);
}

/** A counted phrase: `key.one` / `key.other` by the language's plural rules; {n} is set. */
export function tn(key, n, vars = {}) {
  const count = Number(n) || 0;
  const rule = new Intl.PluralRules(locale()).select(count);
  const table = STRINGS[lang];
  const text = table[`${key}.${rule}`] ?? table[`${key}.other`] ?? en[`${key}.${rule}`] ?? en[`${key}.other`];
  if (text === undefined) return `${key} ${count}`;
  return fill(text, { ...vars, n: new Intl.NumberFormat(locale()).format(count) });
}

/** Fills every data-i18n / data-i18n-attr element under `root`. */
export function applyI18n(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of node.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':').map((s) => s.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
}

/** Adds strings (the API reference page brings its own). */
export function extend(more) {
  for (const [code, table] of Object.entries(more)) Object.assign(STRINGS[code], table);
}
