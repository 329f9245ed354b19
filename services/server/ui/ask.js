// Ask view: streamed answers with citation chips, conversations and follow-ups, feedback,
// the export of rated answers, and the advanced generation and prompt settings.

import { api, request, readEvents, download, kbPath } from './api.js';
import { t, tn } from './i18n.js';
import {
  state, on, $, el, showInfo, showError, say, confirmAction, busy, numberValue,
  fmtNum, fmtDate,
} from './ui.js';


const question = $('#ask-question');
const answerBox = $('#ask-answer');
const turnBox = $('#ask-turn');

/**
 * A turn as shown: `citations`/`context` are Citations (from an answer) or SourceRefs
 * (from a stored conversation, without heading and page); `sources` are what the
 * `sources` event announced, for chips while the answer streams.
 */
let live = null;
let earlier = [];
let conversationId = null;
let turnCount = 0;
let controller = null;
let conversations = [];
let conversationsFor = null;
let renderPending = false;

// ---- citations --------------------------------------------------------------------------

function sourceOf(turn, index) {
  const lists = [turn.citations, turn.context, turn.sources];
  for (const list of lists) {
    const found = (list || []).find((s) => Number(s.index) === index);
    if (found) return found;
  }
  return null;
}

function openCitation(source) {
  $('#citation-title').textContent = t('cite.title', { n: source.index });
  $('#citation-quote').textContent = source.quote || source.text || '';
  $('#citation-doc').textContent = source.document_name || source.document_id || '—';
  $('#citation-doc').title = source.document_id || '';
  $('#citation-heading').textContent = source.heading || '—';
  $('#citation-page').textContent = source.page ? String(source.page) : '—';
  const passage = source.text && source.text !== source.quote ? source.text : '';
  $('#citation-text').textContent = passage;
  $('#citation-passage').hidden = !passage;
  $('#citation-passage').open = false;
  $('#citation-dialog').showModal();
}

function chip(source) {
  return el('button', {
    type: 'button',
    class: 'citation-chip',
    dataset: { index: String(source.index) },
    'aria-label': t('cite.chipLabel', { n: source.index, name: source.document_name || '' }),
    title: source.document_name || '',
    text: String(source.index),
    on: { click: () => openCitation(source) },
  });
}

/** The answer text with every `[n]` (or `[1, 2]`) that names a known source as chips. */
function answerNodes(turn, text) {
  const nodes = [];
  const marker = /\[(\d+(?:\s*[,，]\s*\d+)*)\]/g;
  let at = 0;
  for (const match of text.matchAll(marker)) {
    const sources = match[1].split(/[,，]/).map((n) => sourceOf(turn, Number(n.trim())));
    if (sources.some((s) => !s)) continue;
    nodes.push(text.slice(at, match.index));
    nodes.push(el('span', { class: 'chips-inline' }, sources.map(chip)));
    at = match.index + match[0].length;
  }
  nodes.push(text.slice(at));
  return nodes;
}

// ---- rendering --------------------------------------------------------------------------

function rewriteText(turn) {
  if (!turn.followUp && !turn.rewrite) return '';
  if (!turn.searchQuery || turn.searchQuery === turn.question) return '';
  const how = turn.rewrite ? t(`ask.rewriteBy.${turn.rewrite}`) : '';
  return t('ask.rewrite', { query: turn.searchQuery, how });
}

function metaText(turn) {
  const r = turn.response;
  if (!r) return turn.grounded === false ? t('ask.notGrounded') : '';
  const parts = [];
  if (r.grounded === false) parts.push(t('ask.notGrounded'));
  if (r.answer_mode) parts.push(t(`ask.madeBy.${r.answer_mode}`));
  if (r.sources_used !== undefined) parts.push(tn('ask.sourcesUsed', r.sources_used));
  if (r.sources_dropped) parts.push(tn('ask.sourcesDropped', r.sources_dropped));
  if (r.history_turns_used) parts.push(tn('ask.historyUsed', r.history_turns_used));
  if (r.translated_query) parts.push(t('ask.translated', { query: r.translated_query }));
  const tm = r.timings;
  if (tm) {
    if (tm.time_to_first_token_ms !== null && tm.time_to_first_token_ms !== undefined) {
      parts.push(t('ask.firstToken', { ms: fmtNum(tm.time_to_first_token_ms) }));
    }
    if (tm.tokens_per_second) parts.push(t('ask.tokPerSec', { n: fmtNum(tm.tokens_per_second, 1) }));
    parts.push(t('ask.total', { ms: fmtNum(tm.total_ms) }));
  }
  if (r.finish_reason === 'length') parts.push(t('ask.cutShort'));
  return parts.join(' · ');
}

function feedbackButtons(turn, { up, down }) {
  const rated = turn.rating === 'good' ? 'up' : turn.rating === 'bad' ? 'down' : '';
  up.setAttribute('aria-pressed', String(rated === 'up'));
  down.setAttribute('aria-pressed', String(rated === 'down'));
  return rated;
}

async function rate(turn, rating) {
  if (!conversationId || !turn.turn) return;
  try {
    await api(`/v1/conversations/${encodeURIComponent(conversationId)}/feedback`, {
      method: 'POST',
      json: { turn: turn.turn, rating },
    });
    turn.rating = rating;
    showInfo(t(rating === 'good' ? 'ask.ratedGood' : 'ask.ratedBad'));
  } catch (err) {
    showError(err);
  }
  if (turn === live) renderLive();
  else renderTranscript();
}

/** A thumb icon, cloned from the page's template (SVG built in script would need its namespace URL). */
function thumb(direction) {
  const icon = $('#thumb-template').content.firstElementChild.cloneNode(true);
  if (direction === 'down') icon.classList.add('down');
  return icon;
}

function renderTranscript() {
  $('#ask-transcript').replaceChildren(
    ...earlier.map((turn) => {
      const up = el('button', {
        type: 'button', class: 'icon-button feedback-up-btn',
        'aria-label': t('ask.good'), title: t('ask.good'),
        on: { click: () => rate(turn, 'good') },
      }, thumb());
      const down = el('button', {
        type: 'button', class: 'icon-button feedback-down-btn',
        'aria-label': t('ask.bad'), title: t('ask.bad'),
        on: { click: () => rate(turn, 'bad') },
      }, thumb('down'));
      const rated = feedbackButtons(turn, { up, down });
      const rewrite = rewriteText(turn);
      return el(
        'li',
        { class: 'turn', dataset: { turn: String(turn.turn || ''), rated } },
        el('p', { class: 'turn-question' }, el('span', { class: 'who', text: t('ask.you') }), ' ', turn.question),
        rewrite ? el('p', { class: 'rewrite', text: rewrite }) : null,
        el('div', { class: 'answer' }, answerNodes(turn, turn.answer || '')),
        el('div', { class: 'feedback', role: 'group', 'aria-label': t('ask.rate'), dataset: { rated } }, up, down),
      );
    }),
  );
}

function renderSources(turn) {
  const list = turn.state === 'done'
    ? [...(turn.citations || []), ...(turn.context || [])]
    : turn.sources || [];
  const sorted = [...list].sort((a, b) => a.index - b.index);
  $('#ask-sources').hidden = sorted.length === 0;
  $('#ask-sources-list').replaceChildren(
    ...sorted.map((s) =>
      el(
        'li',
        { value: String(s.index) },
        el('button', {
          type: 'button',
          class: 'link-button',
          text: [s.document_name, s.heading, s.page ? t('docs.page', { page: s.page }) : null]
            .filter(Boolean)
            .join(' — '),
          on: { click: () => openCitation(s) },
        }),
        (turn.citations || []).includes(s) && turn.state === 'done'
          ? el('span', { class: 'badge cited', text: t('ask.cited') })
          : null,
      ),
    ),
  );
}

function renderLive() {
  renderPending = false;
  turnBox.hidden = !live;
  if (!live) {
    answerBox.replaceChildren();
    answerBox.dataset.state = 'idle';
    answerBox.dataset.tokens = '0';
    $('#ask-rewrite').hidden = true;
    $('#feedback').hidden = true;
    renderConversationState();
    return;
  }
  $('#ask-current-question').textContent = live.question;
  const rewrite = rewriteText(live);
  $('#ask-rewrite').textContent = rewrite;
  $('#ask-rewrite').hidden = !rewrite;
  answerBox.replaceChildren(...answerNodes(live, live.answer || ''));
  if (live.state === 'streaming') answerBox.append(el('span', { class: 'cursor', 'aria-hidden': 'true' }));
  answerBox.setAttribute('aria-busy', String(live.state === 'streaming'));
  $('#ask-meta').textContent = live.state === 'stopped' ? t('ask.stopped') : metaText(live);
  renderSources(live);
  const canRate = live.state === 'done' && Boolean(conversationId && live.turn);
  const box = $('#feedback');
  box.hidden = !canRate;
  const rated = feedbackButtons(live, { up: $('#feedback-up'), down: $('#feedback-down') });
  if (rated) {
    box.dataset.rated = rated;
    turnBox.dataset.rated = rated;
  } else {
    delete box.dataset.rated;
    delete turnBox.dataset.rated;
  }
  // Set last: a test or screen reader waiting for "done" sees the finished content.
  answerBox.dataset.tokens = String(live.tokens || 0);
  answerBox.dataset.state = live.state;
  renderConversationState();
}

function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(renderLive);
}

function renderConversationState() {
  $('#ask-conversation-state').textContent = conversationId
    ? t('ask.followUp', { turns: tn('ask.turns', turnCount) })
    : t('ask.newConversation');
  for (const item of $('#conversation-list').children) {
    item.classList.toggle('current', item.dataset.conversationId === conversationId);
  }
}

// ---- asking -----------------------------------------------------------------------------

const COSTAR = {
  persona: '#costar-persona',
  context: '#costar-context',
  objective: '#costar-objective',
  style: '#costar-style',
  tone: '#costar-tone',
  audience: '#costar-audience',
  response_format: '#costar-response-format',
};

function buildAsk(text) {
  const body = { question: text, stream: true };
  if (conversationId) body.conversation_id = conversationId;
  const mode = $('#ask-mode').value;
  if (mode) body.answer_mode = mode;
  const temperature = numberValue($('#ask-temperature'));
  if (temperature !== undefined) body.temperature = temperature;
  const maxTokens = numberValue($('#ask-max-tokens'));
  if (maxTokens !== undefined) body.max_tokens = Math.round(maxTokens);
  const topK = numberValue($('#ask-top-k'));
  if (topK !== undefined) body.top_k = Math.round(topK);
  const prompt = {};
  for (const [field, selector] of Object.entries(COSTAR)) {
    const value = $(selector).value.trim();
    if (value) prompt[field] = value;
  }
  if (Object.keys(prompt).length) body.prompt = prompt;
  return body;
}

function finish(turn, response) {
  turn.response = response;
  turn.answer = response.answer || '';
  turn.citations = response.citations || [];
  turn.context = response.context || [];
  turn.grounded = response.grounded;
  turn.searchQuery = response.search_query || turn.question;
  turn.rewrite = response.rewrite || null;
  if (response.conversation_id) {
    if (response.conversation_id !== conversationId) turnCount = 0;
    conversationId = response.conversation_id;
  }
  // The server numbers the turn; the count is a fallback for a reply without it.
  turn.turn = response.turn || turnCount + 1;
  turnCount = turn.turn;
  turn.state = 'done';
}

/** Re-renders `turn` if it is still the one shown (a new conversation may have replaced it). */
function show(turn, now = false) {
  if (turn !== live) return;
  if (now) renderLive();
  else scheduleRender();
}

async function send() {
  if (controller) return;
  const text = question.value.trim();
  if (!state.kb) {
    say('error', t('common.needsKb'));
    return;
  }
  if (!text) {
    say('error', t('ask.emptyQuestion'));
    question.focus();
    return;
  }
  if (live && live.state === 'done') earlier.push(live);
  const turn = {
    question: text, answer: '', sources: [], citations: [], context: [], tokens: 0,
    state: 'streaming', turn: null, rating: null, followUp: Boolean(conversationId),
  };
  live = turn;
  question.value = '';
  renderTranscript();
  renderLive();
  const kb = state.kb;
  const body = buildAsk(text);
  const mine = new AbortController();
  controller = mine;
  $('#ask-stop').hidden = false;
  $('#ask-send').disabled = true;
  try {
    const response = await request(`${kbPath(kb)}/ask`, {
      method: 'POST',
      json: body,
      signal: mine.signal,
      accept: 'text/event-stream',
    });
    if ((response.headers.get('content-type') || '').includes('application/json')) {
      finish(turn, await response.json());
      show(turn, true);
    } else {
      let ended = false;
      await readEvents(response, (type, data) => {
        const payload = JSON.parse(data);
        if (type === 'sources') {
          turn.sources = payload.sources || [];
          turn.grounded = payload.grounded;
          show(turn);
        } else if (type === 'token') {
          turn.answer += payload.text || '';
          turn.tokens += 1;
          if (turn === live) answerBox.dataset.tokens = String(turn.tokens);
          show(turn);
        } else if (type === 'done') {
          ended = true;
          finish(turn, payload);
          show(turn, true);
        } else if (type === 'error') {
          ended = true;
          turn.state = 'error';
          show(turn, true);
          say('error', payload.error?.message || t('ask.failed'));
        }
      });
      if (!ended) throw new Error(t('ask.streamEnded'));
    }
    if (turn.state === 'done') await loadConversations();
  } catch (err) {
    const stopped = err.name === 'AbortError';
    turn.state = stopped ? 'stopped' : 'error';
    show(turn, true);
    if (turn === live) {
      if (stopped) showInfo(t('ask.stopped'));
      else showError(err);
      // Nothing was answered: give the question back so it can be sent again.
      if (!turn.answer && !question.value) question.value = text;
    }
  } finally {
    if (controller === mine) {
      controller = null;
      $('#ask-stop').hidden = true;
      $('#ask-send').disabled = false;
    }
  }
}

$('#ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});

question.addEventListener('keydown', (e) => {
  // Enter while an input method is composing picks a candidate; it must not send.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    $('#ask-form').requestSubmit();
  }
});

$('#ask-stop').addEventListener('click', () => controller?.abort());
$('#feedback-up').addEventListener('click', () => live && rate(live, 'good'));
$('#feedback-down').addEventListener('click', () => live && rate(live, 'bad'));

/** Stops the answer being streamed, at once: a new question may follow immediately. */
function stopStreaming() {
  if (!controller) return;
  controller.abort();
  controller = null;
  $('#ask-stop').hidden = true;
  $('#ask-send').disabled = false;
}

function newConversation() {
  stopStreaming();
  conversationId = null;
  turnCount = 0;
  earlier = [];
  live = null;
  renderTranscript();
  renderLive();
}

$('#ask-new').addEventListener('click', () => {
  newConversation();
  question.focus();
});

// ---- conversations ----------------------------------------------------------------------

function fromStored(turn) {
  return {
    turn: turn.turn,
    question: turn.question,
    answer: turn.answer,
    searchQuery: turn.search_query,
    rewrite: turn.rewrite || null,
    followUp: turn.turn > 1,
    grounded: turn.grounded,
    citations: turn.citations || [],
    context: turn.context || [],
    sources: [],
    rating: turn.feedback?.rating || null,
    tokens: 0,
    state: 'done',
  };
}

async function openConversation(id) {
  stopStreaming();
  try {
    const conversation = await api(`/v1/conversations/${encodeURIComponent(id)}`);
    const turns = (conversation.turns || []).map(fromStored);
    conversationId = conversation.id;
    turnCount = turns.length ? turns[turns.length - 1].turn : 0;
    live = turns.pop() || null;
    earlier = turns;
    renderTranscript();
    renderLive();
    renderConversations();
  } catch (err) {
    showError(err);
  }
}

async function deleteConversation(item) {
  const name = item.title || fmtDate(item.created_at);
  if (!(await confirmAction(t('ask.confirmDelete', { name }), t('common.delete')))) return;
  try {
    await api(`/v1/conversations/${encodeURIComponent(item.id)}`, { method: 'DELETE' });
    if (item.id === conversationId) newConversation();
    showInfo(t('ask.deleted'));
    await loadConversations();
  } catch (err) {
    showError(err);
  }
}

function renderConversations() {
  $('#conversation-list').replaceChildren(
    ...conversations.map((c) =>
      el(
        'li',
        { class: c.id === conversationId ? 'current' : '', dataset: { conversationId: c.id } },
        el(
          'button',
          { type: 'button', class: 'conv-open', on: { click: () => openConversation(c.id) } },
          el('span', { class: 'conv-title', text: c.title || t('ask.untitled') }),
          el('span', { class: 'conv-meta hint', text: `${tn('ask.turns', c.turns)} · ${fmtDate(c.updated_at)}` }),
        ),
        el('button', {
          type: 'button',
          class: 'conv-delete icon-button',
          'aria-label': t('ask.deleteLabel', { name: c.title || fmtDate(c.created_at) }),
          title: t('common.delete'),
          text: '×',
          on: { click: () => deleteConversation(c) },
        }),
      ),
    ),
  );
  $('#conversation-empty').hidden = conversations.length > 0 || !state.kb;
}

async function loadConversations() {
  const kb = state.kb;
  if (!kb) {
    conversations = [];
    conversationsFor = null;
    renderConversations();
    return;
  }
  try {
    const list = await api(`/v1/conversations?kb=${encodeURIComponent(kb)}`);
    if (state.kb !== kb) return;
    conversations = list.conversations || [];
    conversationsFor = kb;
  } catch (err) {
    showError(err);
  }
  renderConversations();
}

$('#export-qa').addEventListener('click', (e) => {
  if (!state.kb) {
    say('error', t('common.needsKb'));
    return;
  }
  const kb = state.kb;
  busy(e.currentTarget, async () => {
    try {
      const blob = await download(`${kbPath(kb)}/export/qa.jsonl`, `${kb}-qa.jsonl`);
      const lines = (await blob.text()).split('\n').filter((l) => l.trim()).length;
      showInfo(lines ? tn('ask.exported', lines) : t('ask.exportedNone'));
    } catch (err) {
      showError(err);
    }
  });
});

// ---- events -----------------------------------------------------------------------------

/** A new KB, or a new key (maybe another person), starts afresh. */
function forgetConversations() {
  newConversation();
  conversations = [];
  conversationsFor = null;
  renderConversations();
  if (state.view === 'ask') return loadConversations();
  return undefined;
}
on('kb', forgetConversations);
on('key', forgetConversations);
on('view', (view) => {
  if (view === 'ask' && conversationsFor !== state.kb) return loadConversations();
  return undefined;
});
on('lang', () => {
  renderTranscript();
  renderLive();
  renderConversations();
});

renderLive();
