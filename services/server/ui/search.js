// Search playground: every knob of POST /v1/kbs/{kb}/search, and the hits with the
// scores of both retrievers, so one can see why a chunk ranked where it did.

import { api, kbPath } from './api.js';
import { t, tn } from './i18n.js';
import { state, on, $, el, showError, say, splitList, numberValue, busy, fmtScore, fmtNum } from './ui.js';

let last = null; // { request, response }, re-rendered on language change

function buildRequest() {
  const request = { query: $('#search-query').value.trim() };
  const mode = $('#search-mode').value;
  if (mode) request.mode = mode;
  const fusion = $('#search-fusion').value;
  if (fusion) request.fusion = fusion;
  // alpha means something only to weighted fusion; sent alone it would be a silent no-op.
  const alpha = numberValue($('#search-alpha'));
  if (alpha !== undefined && fusion !== 'rrf') request.alpha = alpha;
  const topK = numberValue($('#search-top-k'));
  if (topK !== undefined) request.top_k = Math.round(topK);
  const expand = numberValue($('#search-expand'));
  if (expand !== undefined) request.expand = Math.round(expand);
  if ($('#search-translate').checked) request.translate = true;

  // An empty list is refused by the server (it would silently widen a scoped search), so
  // empty fields are left out rather than sent as [].
  const filter = {};
  const tags = splitList($('#search-tags').value);
  if (tags.length) filter.tags = tags;
  const prefix = $('#search-path-prefix').value.trim();
  if (prefix) filter.path_prefix = prefix;
  const mimes = splitList($('#search-mime-types').value);
  if (mimes.length) filter.mime_types = mimes;
  const ids = splitList($('#search-document-ids').value);
  if (ids.length) filter.document_ids = ids;
  if (Object.keys(filter).length) request.filter = filter;
  return request;
}

function scoreCell(label, cls, value) {
  return el(
    'span',
    { class: 'score' },
    el('span', { class: 'score-label', text: label }),
    ' ',
    el('span', { class: cls, text: fmtScore(value) }),
  );
}

function hit(h, rank) {
  const neighbors = h.neighbors || [];
  return el(
    'li',
    { class: 'hit', dataset: { chunkId: h.chunk_id, documentId: h.document_id } },
    el(
      'div',
      { class: 'hit-head' },
      el('span', { class: 'hit-rank', text: `#${rank}` }),
      el('span', { class: 'hit-doc', text: h.document_name, title: h.document_id }),
      el('span', { class: 'hit-heading', text: h.heading || '' }),
      el('span', { class: 'hit-page', text: h.page ? t('docs.page', { page: h.page }) : '' }),
      h.ocr
        ? el('span', {
            class: 'badge ocr',
            text: h.ocr_confidence !== null && h.ocr_confidence !== undefined
              ? t('search.ocrConfidence', { value: fmtNum(h.ocr_confidence, 1) })
              : t('search.ocr'),
          })
        : null,
    ),
    el(
      'div',
      { class: 'hit-scores' },
      scoreCell(t('search.score'), 'hit-score', h.score),
      scoreCell(t('search.dense'), 'hit-dense', h.dense_score),
      scoreCell(t('search.keyword'), 'hit-keyword', h.keyword_score),
    ),
    el('p', { class: 'hit-text', text: h.text }),
    neighbors.length
      ? el(
          'details',
          { class: 'neighbors' },
          el('summary', { text: tn('search.neighbors', neighbors.length) }),
          neighbors.map((n) =>
            el(
              'p',
              { class: n.chunk_index < h.chunk_index ? 'neighbor before' : 'neighbor after' },
              el('span', { class: 'hint', text: `#${n.chunk_index} ` }),
              n.text,
            ),
          ),
        )
      : null,
  );
}

function render() {
  const results = $('#search-results');
  if (!last) {
    results.replaceChildren();
    $('#search-summary').textContent = '';
    return;
  }
  const { response } = last;
  const hits = response.hits || [];
  results.replaceChildren(...hits.map((h, i) => hit(h, i + 1)));
  const parts = [tn('search.hits', hits.length)];
  if (response.no_relevant_context) parts.push(t('search.noRelevant'));
  if (response.translated_query) parts.push(t('search.translated', { query: response.translated_query }));
  $('#search-summary').textContent = parts.join(' · ');
}

async function run() {
  if (!state.kb) {
    say('error', t('common.needsKb'));
    return;
  }
  const request = buildRequest();
  if (!request.query) {
    say('error', t('search.emptyQuery'));
    $('#search-query').focus();
    return;
  }
  try {
    const response = await api(`${kbPath(state.kb)}/search`, { method: 'POST', json: request });
    last = { request, response };
  } catch (err) {
    last = null;
    showError(err);
  }
  render();
}

$('#search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  busy($('#search-run'), run);
});

function syncKnobs() {
  // Fusion and alpha only apply to hybrid mode: dim them rather than disable, so values
  // can be set in any order.
  const hybrid = $('#search-mode').value === 'hybrid';
  $('#search-fusion').closest('.field').classList.toggle('inactive', !hybrid);
  const weighted = hybrid && $('#search-fusion').value !== 'rrf';
  $('#search-alpha').closest('.field').classList.toggle('inactive', !weighted);
}

$('#search-mode').addEventListener('change', syncKnobs);
$('#search-fusion').addEventListener('change', syncKnobs);
syncKnobs();

on('kb', () => {
  last = null;
  render();
});
on('lang', render);
