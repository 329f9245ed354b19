// Models view: what GET /v1/models reports about the LLM and the embedder (and the
// knowledge bases offered as chat models), and the tokenizer, which shows how the LLM and
// the keyword index each cut a text.

import { api } from './api.js';
import { t, tn } from './i18n.js';
import { state, on, $, el, showError, say, busy, fmtNum, fmtBytes, fmtDate } from './ui.js';

let models = null;
let tokenized = null;

function fact(label, value) {
  if (value === null || value === undefined || value === '') return null;
  return [el('dt', { text: label }), el('dd', { text: String(value) })];
}

function modelCard(m) {
  const slots = m.slots;
  return el(
    'article',
    { class: `card model role-${m.role}`, dataset: { modelId: m.id, role: m.role } },
    el(
      'header',
      { class: 'model-head' },
      el('h3', { class: 'model-name', text: m.name || m.id }),
      el('span', { class: 'badge', text: t(`models.role.${m.role}`) }),
    ),
    m.description ? el('p', { class: 'hint', text: m.description }) : null,
    el(
      'dl',
      { class: 'facts' },
      fact(t('models.id'), m.id),
      fact(t('models.engine'), m.engine),
      fact(
        t('models.parameters'),
        m.parameters_label || (m.parameters ? fmtNum(m.parameters) : null),
      ),
      fact(t('models.quantization'), m.quantization),
      fact(t('models.contextLength'), m.context_length ? fmtNum(m.context_length) : null),
      fact(t('models.contextWindow'), m.context_window ? fmtNum(m.context_window) : null),
      fact(t('models.dimension'), m.embedding_dimension ? fmtNum(m.embedding_dimension) : null),
      fact(t('models.chatTemplate'), m.chat_template),
      fact(t('models.fileSize'), m.file_size ? fmtBytes(m.file_size) : null),
      fact(t('models.path'), m.path),
      fact(t('models.created'), m.created ? fmtDate(new Date(m.created * 1000).toISOString()) : null),
      slots
        ? fact(
            t('models.slots'),
            t('models.slotsValue', {
              busy: fmtNum(slots.busy),
              parallel: fmtNum(slots.parallel),
              queued: fmtNum(slots.queued),
              queue: fmtNum(slots.queue),
              admitted: fmtNum(slots.admitted),
              rejected: fmtNum(slots.rejected),
            }),
          )
        : null,
    ),
  );
}

function render() {
  const list = $('#models-list');
  if (!models) {
    list.replaceChildren();
    return;
  }
  // The engines first: the KB entries are the same LLM seen through a knowledge base.
  const engines = models.filter((m) => m.role !== 'knowledge_base');
  const kbs = models.filter((m) => m.role === 'knowledge_base');
  list.replaceChildren(
    ...engines.map(modelCard),
    kbs.length
      ? el(
          'section',
          { class: 'card kb-models' },
          el('h3', { text: t('models.kbModels') }),
          el('p', { class: 'hint', text: t('models.kbModelsHint') }),
          el(
            'ul',
            { class: 'plain' },
            kbs.map((m) =>
              el('li', { dataset: { modelId: m.id } }, el('code', { text: m.id }), m.description ? ` — ${m.description}` : ''),
            ),
          ),
        )
      : null,
  );
}

async function load() {
  try {
    const list = await api('/v1/models');
    models = list.data || [];
  } catch (err) {
    showError(err);
  }
  render();
}

function renderTokens() {
  const tokens = $('#tokenize-tokens');
  const words = $('#tokenize-words');
  if (!tokenized) {
    tokens.replaceChildren();
    words.replaceChildren();
    $('#tokenize-count').textContent = '';
    return;
  }
  // Pieces are shown raw; the chip borders make leading spaces and newlines visible.
  tokens.replaceChildren(
    ...(tokenized.tokens || []).map((tok) =>
      el('span', { class: 'chip token', title: t('tok.id', { id: tok.id }), dataset: { id: String(tok.id) }, text: tok.piece }),
    ),
  );
  words.replaceChildren(...(tokenized.words || []).map((w) => el('span', { class: 'chip word', text: w })));
  $('#tokenize-count').textContent = [
    tn('tok.tokenCount', tokenized.count ?? (tokenized.tokens || []).length),
    tn('tok.wordCount', (tokenized.words || []).length),
  ].join(' · ');
}

async function tokenize() {
  const text = $('#tokenize-text').value;
  if (!text.trim()) {
    say('error', t('tok.empty'));
    $('#tokenize-text').focus();
    return;
  }
  try {
    tokenized = await api('/v1/tokenize', { method: 'POST', json: { text } });
  } catch (err) {
    tokenized = null;
    showError(err);
  }
  renderTokens();
}

$('#tokenize-form').addEventListener('submit', (e) => {
  e.preventDefault();
  busy($('#tokenize-run'), tokenize);
});
$('#tokenize-text').addEventListener('keydown', (e) => {
  // As in the question box: Enter runs, Shift+Enter adds a line, an IME's Enter picks.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    $('#tokenize-form').requestSubmit();
  }
});
$('#models-refresh').addEventListener('click', (e) => busy(e.currentTarget, load));

on('view', (view) => {
  if (view === 'models' && !models && state.scope) return load();
  return undefined;
});
let loadedAs = null;
on('access', () => {
  // A new key may see other knowledge bases as models; selecting a KB changes nothing here.
  const who = `${state.scope}/${state.keyKb}`;
  if (who === loadedAs) return undefined;
  loadedAs = who;
  models = null;
  if (state.view === 'models' && state.scope) return load();
  render();
  return undefined;
});
on('lang', () => {
  render();
  renderTokens();
});
