// Documents view: the current knowledge base's documents page by page, with delete and
// re-upload (a new version under the same document id) per row.

import { api, upload, followJob, kbPath, docPath, ApiError } from './api.js';
import { t, tn } from './i18n.js';
import {
  state, on, emit, $, el, canWrite, showInfo, showError, say, confirmAction, busy,
  fmtNum, fmtDate, fmtBytes,
} from './ui.js';

const PAGE = 100;
const table = $('#documents-table');
const body = table.tBodies[0];

let documents = [];
let nextCursor = null;
let loadedFor = null; // the KB `documents` belongs to; another KB means reload
let stale = true;
/** Ids of documents being re-uploaded, so a re-render keeps showing it. */
const reuploading = new Set();

function ocrSummary(pages) {
  if (!pages || !pages.length) return '—';
  const confidences = pages.map((p) => p.confidence).filter((c) => typeof c === 'number');
  const failed = pages.filter((p) => p.error).length;
  const parts = [tn('docs.ocrPages', pages.length)];
  if (confidences.length) {
    const mean = confidences.reduce((a, b) => a + b, 0) / confidences.length;
    parts.push(t('docs.ocrConfidence', { value: fmtNum(mean, 1) }));
  }
  if (failed) parts.push(tn('docs.ocrFailed', failed));
  return parts.join(' · ');
}

function ocrDetails(pages) {
  // Page by page in the tooltip, so a low mean can be traced to the page that caused it.
  return (pages || [])
    .map((p) => {
      const where = p.page ? t('docs.page', { page: p.page }) : p.image || '?';
      if (p.error) return `${where}: ${p.error}`;
      return `${where}: ${p.confidence === null || p.confidence === undefined ? '—' : fmtNum(p.confidence, 1)} (${tn('docs.words', p.words || 0)})`;
    })
    .join('\n');
}

function row(doc) {
  const writable = canWrite(state.kb);
  const status = doc.status || 'indexed';
  const path = doc.path && doc.path !== doc.name ? doc.path : null;
  const busyHere = reuploading.has(doc.id);
  return el(
    'tr',
    { dataset: { docId: doc.id, status } },
    el(
      'td',
      { class: 'doc-name-cell' },
      el('span', { class: 'doc-name', text: doc.name }),
      path ? el('span', { class: 'doc-path hint', text: path }) : null,
      doc.id !== (doc.path || doc.name)
        ? el('span', { class: 'doc-id hint', text: t('docs.id', { id: doc.id }) })
        : null,
      doc.size !== undefined
        ? el('span', { class: 'doc-size hint', text: `${fmtBytes(doc.size)} · v${doc.version ?? 1}` })
        : null,
    ),
    el(
      'td',
      {},
      el('span', { class: `badge status-${status}`, text: t(`docStatus.${status}`) }),
      busyHere ? el('span', { class: 'badge working', text: t('docs.reuploading') }) : null,
      doc.reason ? el('span', { class: 'doc-reason', text: doc.reason }) : null,
    ),
    el('td', { class: 'doc-format', text: doc.format || '—' }),
    el('td', { class: 'num doc-chunks', text: fmtNum(doc.chunks) }),
    el('td', { class: 'doc-ocr', title: ocrDetails(doc.ocr_pages) || null, text: ocrSummary(doc.ocr_pages) }),
    el(
      'td',
      { class: 'doc-tags' },
      (doc.tags || []).length ? doc.tags.map((tag) => el('span', { class: 'tag', text: tag })) : '—',
    ),
    el('td', { class: 'doc-updated', text: fmtDate(doc.updated_at || doc.created_at) }),
    el(
      'td',
      { class: 'doc-actions' },
      writable
        ? [
            el(
              'label',
              { class: 'button secondary small file-button' },
              t('docs.reupload'),
              el('input', {
                type: 'file',
                class: 'doc-reupload visually-hidden',
                'aria-label': t('docs.reuploadLabel', { name: doc.name }),
                disabled: busyHere,
                on: { change: (e) => reupload(doc, e.currentTarget) },
              }),
            ),
            el('button', {
              type: 'button',
              class: 'doc-delete danger small',
              'aria-label': t('docs.deleteLabel', { name: doc.name }),
              text: t('common.delete'),
              disabled: busyHere,
              on: { click: (e) => remove(doc, e.currentTarget) },
            }),
          ]
        : null,
    ),
  );
}

function render() {
  body.replaceChildren(...documents.map(row));
  $('#documents-empty').hidden = documents.length > 0 || !state.kb || loadedFor !== state.kb;
  $('#documents-more').hidden = !nextCursor;
  $('#documents-count').textContent = state.kb && loadedFor === state.kb
    ? (nextCursor ? t('docs.countMore', { n: fmtNum(documents.length) }) : tn('docs.count', documents.length))
    : '';
  table.hidden = !state.kb;
}

async function load({ more = false } = {}) {
  const kb = state.kb;
  if (!kb) {
    documents = [];
    nextCursor = null;
    loadedFor = null;
    render();
    return;
  }
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (more && nextCursor) params.set('cursor', nextCursor);
  try {
    const page = await api(`${kbPath(kb)}/documents?${params}`);
    if (state.kb !== kb) return; // the user switched KB while this was loading
    documents = more ? [...documents, ...page.documents] : page.documents;
    nextCursor = page.next_cursor || null;
    loadedFor = kb;
    stale = false;
  } catch (err) {
    showError(err);
  }
  render();
}

async function remove(doc, button) {
  const ok = await confirmAction(t('docs.confirmDelete', { name: doc.name }), t('common.delete'));
  if (!ok) {
    button.focus();
    return;
  }
  try {
    await api(docPath(state.kb, doc.id), { method: 'DELETE' });
    documents = documents.filter((d) => d.id !== doc.id);
    render();
    showInfo(t('docs.deleted', { name: doc.name }));
    emit('kbs-changed');
  } catch (err) {
    showError(err);
  }
}

/**
 * The part's file name becomes the document's path, so a new file keeps the folder the
 * document was in; its own name keeps the extension the format is detected from.
 */
function reuploadName(doc, file) {
  const path = doc.path || doc.name || '';
  const slash = path.lastIndexOf('/');
  return slash >= 0 ? `${path.slice(0, slash + 1)}${file.name}` : file.name;
}

async function reupload(doc, input) {
  const file = input.files[0];
  if (!file) return;
  const kb = state.kb;
  const form = new FormData();
  form.append('document_id', doc.id);
  // A new version keeps the document's tags; without them it would lose its filters.
  if (doc.tags?.length) form.append('tags', doc.tags.join(','));
  form.append('file', file, reuploadName(doc, file));
  reuploading.add(doc.id);
  render();
  showInfo(t('docs.reuploadStarted', { name: doc.name }));
  try {
    const accepted = await upload(`${kbPath(kb)}/documents?wait=false`, form);
    const final = await followJob(accepted.job_id, () => {});
    const failure = (final.errors || [])[0];
    if (final.state === 'succeeded' && !failure) showInfo(t('docs.reuploaded', { name: doc.name }));
    else if (failure) say('error', t('docs.reuploadFailed', { name: doc.name, message: failure.message }));
    else say('error', t('docs.reuploadFailed', { name: doc.name, message: final.message || t(`job.${final.state}`) }));
  } catch (err) {
    if (err instanceof ApiError && err.files?.length) {
      say('error', t('docs.reuploadFailed', { name: doc.name, message: err.files[0].message }));
    } else showError(err);
  } finally {
    reuploading.delete(doc.id);
    emit('kbs-changed');
    if (state.kb === kb) await load();
  }
}

$('#documents-refresh').addEventListener('click', (e) => busy(e.currentTarget, () => load()));
$('#documents-more').addEventListener('click', (e) => busy(e.currentTarget, () => load({ more: true })));

function loadIfShown() {
  if (state.view === 'documents' && (stale || loadedFor !== state.kb)) return load();
  render();
  return undefined;
}

on('view', loadIfShown);
on('kb', () => {
  stale = true;
  documents = [];
  nextCursor = null;
  return loadIfShown();
});
on('documents-changed', () => {
  stale = true;
  return loadIfShown();
});
on('access', render);
on('lang', render);

render();
