// Entry point of the web UI: navigation, language, the API key and what it may do, and
// the knowledge-base view. The other views live in their own modules and react to the
// events emitted here ('kb', 'access', 'lang', 'view', 'kbs-changed').

import { api, request, kbPath, getKey, setKey, ApiError } from './api.js';
import { t, tn, getLang, setLang, applyI18n } from './i18n.js';
import {
  state, on, emit, $, $$, el, canWrite, canCreateKb, showInfo, showError, say,
  confirmAction, busy, fmtNum,
} from './ui.js';
import './upload.js';
import './documents.js';
import './search.js';
import './ask.js';
import './models.js';

const VIEWS = ['kbs', 'upload', 'documents', 'search', 'ask', 'models'];
const KB_STORAGE = 'zhiku.kb';

// ---- navigation -------------------------------------------------------------------------

function showView(name) {
  if (!VIEWS.includes(name)) name = 'kbs';
  state.view = name;
  for (const view of VIEWS) {
    $(`#view-${view}`).hidden = view !== name;
    const button = $(`#nav-${view}`);
    if (view === name) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  // The hash lets a reload come back to the same view; replaceState keeps Back useful.
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  emit('view', name);
}

for (const view of VIEWS) {
  $(`#nav-${view}`).addEventListener('click', () => showView(view));
}
// Only view names: the skip link's #main must not switch views.
window.addEventListener('hashchange', () => {
  const name = location.hash.slice(1);
  if (VIEWS.includes(name)) showView(name);
});

// ---- language ---------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
  applyI18n(document);
  $('#lang-select').value = getLang();
  renderCurrentKb();
  renderScopeBadge();
}

$('#lang-select').addEventListener('change', (e) => {
  setLang(e.target.value);
  applyLanguage();
  emit('lang');
});

// ---- message line ----------------------------------------------------------------------

$('#message-close').addEventListener('click', () => say('info', ''));

// ---- API key and scope -----------------------------------------------------------------

function renderScopeBadge() {
  const badge = $('#scope-badge');
  if (!state.scope) {
    badge.hidden = true;
    return;
  }
  badge.hidden = false;
  badge.dataset.scope = state.scope;
  badge.textContent = state.keyKb
    ? t('scope.badgeKb', { scope: t(`scope.${state.scope}`), kb: state.keyKb })
    : t(`scope.${state.scope}`);
  badge.title = t(`scope.${state.scope}.help`);
}

/** Shows or hides the write controls for the current key and knowledge base. */
function applyAccess() {
  const create = canCreateKb();
  $('#kb-create-form').hidden = !create;
  $('#kb-create').disabled = !create;
  const write = canWrite(state.kb);
  for (const node of $$('[data-requires="write"]')) node.hidden = !write;
  // A key that cannot write here has nothing to do in the upload view.
  $('#nav-upload').hidden = !write;
  if (!write && state.view === 'upload') showView('kbs');
  $('#upload-readonly').hidden = write || !state.scope || !state.kb;
  renderKbs();
}

async function checkKey({ announce = false } = {}) {
  try {
    const auth = await api('/v1/auth');
    state.scope = auth.scope;
    state.keyKb = auth.kb || null;
    document.body.dataset.scope = auth.scope;
    if (announce) {
      showInfo(
        auth.kb
          ? t('key.acceptedKb', { scope: t(`scope.${auth.scope}`), kb: auth.kb })
          : t('key.accepted', { scope: t(`scope.${auth.scope}`) }),
      );
    }
  } catch (err) {
    state.scope = null;
    state.keyKb = null;
    // 'none' (rather than no attribute) tells a waiting test the check has happened.
    document.body.dataset.scope = 'none';
    showError(err);
    if (err instanceof ApiError && err.status === 401) $('#api-key').focus();
  }
  renderScopeBadge();
  emit('access');
  if (state.scope) await loadKbs();
  else {
    state.kbs = [];
    // Nothing can be read with this key; the saved choice stays for when a key works.
    if (state.kb) {
      state.kb = null;
      renderCurrentKb();
      emit('kb', null);
    }
    renderKbs();
  }
}

$('#key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setKey($('#api-key').value.trim());
  emit('key');
  busy($('#api-key-save'), () => checkKey({ announce: true }));
});

// ---- knowledge bases -------------------------------------------------------------------

function renderCurrentKb() {
  // #current-kb holds the name only, so that it reads as exactly the KB's name.
  $('#current-kb').textContent = state.kb || '';
  $('#current-kb-none').hidden = Boolean(state.kb);
  for (const node of $$('.current-kb-name')) node.textContent = state.kb || t('app.noKb');
  for (const node of $$('.needs-kb')) node.hidden = Boolean(state.kb);
}

function selectKb(name, { force = false } = {}) {
  if (state.kb === name && !force) return;
  state.kb = name;
  try {
    if (name) sessionStorage.setItem(KB_STORAGE, name);
    else sessionStorage.removeItem(KB_STORAGE);
  } catch {
    /* remembered for this page only */
  }
  renderCurrentKb();
  renderKbs();
  emit('kb', name);
  emit('access');
}

function savedKb() {
  try {
    return sessionStorage.getItem(KB_STORAGE);
  } catch {
    return null;
  }
}

function renderKbs() {
  const list = $('#kb-list');
  list.replaceChildren(
    ...state.kbs.map((kb) => {
      const selected = kb.name === state.kb;
      return el(
        'li',
        { class: selected ? 'kb-item selected' : 'kb-item', dataset: { kb: kb.name } },
        el(
          'div',
          { class: 'kb-main' },
          el('span', { class: 'kb-name', text: kb.name }),
          el(
            'span',
            { class: 'kb-counts' },
            el('span', { class: 'kb-documents', text: tn('kbs.documents', kb.documents) }),
            ' · ',
            el('span', { class: 'kb-chunks', text: tn('kbs.chunks', kb.chunks) }),
          ),
          el('span', {
            class: 'kb-embedder hint',
            text: t('kbs.embedder', { name: kb.embedder, dim: fmtNum(kb.dimension) }),
          }),
        ),
        el(
          'div',
          { class: 'kb-actions' },
          el('button', {
            type: 'button',
            class: selected ? 'kb-select secondary' : 'kb-select',
            'aria-pressed': String(selected),
            'aria-label': t('kbs.selectLabel', { name: kb.name }),
            text: selected ? t('kbs.selected') : t('kbs.select'),
            on: { click: () => selectKb(kb.name) },
          }),
          canWrite(kb.name)
            ? el('button', {
                type: 'button',
                class: 'kb-delete danger',
                'aria-label': t('kbs.deleteLabel', { name: kb.name }),
                text: t('common.delete'),
                on: { click: (e) => deleteKb(kb.name, e.currentTarget) },
              })
            : null,
        ),
      );
    }),
  );
  $('#kb-empty').hidden = state.kbs.length > 0 || !state.scope;
}

async function loadKbs() {
  try {
    const { kbs } = await api('/v1/kbs');
    state.kbs = kbs || [];
  } catch (err) {
    state.kbs = [];
    showError(err);
  }
  const names = state.kbs.map((kb) => kb.name);
  if (!names.includes(state.kb)) {
    // Keep the choice across reloads; a key bound to one KB starts there.
    const preferred = [savedKb(), state.keyKb, names[0]].find((n) => n && names.includes(n));
    selectKb(preferred || null, { force: true });
  }
  renderKbs();
  emit('kbs-loaded');
}

on('kbs-changed', loadKbs);

async function createKb(name) {
  if (!name) {
    say('error', t('kbs.nameRequired'));
    $('#kb-new-name').focus();
    return;
  }
  try {
    const response = await fetchCreate(name);
    showInfo(response.created ? t('kbs.created', { name }) : t('kbs.exists', { name }));
    $('#kb-new-name').value = '';
    await loadKbs();
    selectKb(name);
  } catch (err) {
    showError(err);
  }
}

/** PUT answers 201 for a new knowledge base and 200 for an existing one. */
async function fetchCreate(name) {
  const response = await request(kbPath(name), { method: 'PUT' });
  return { created: response.status === 201, info: await response.json().catch(() => null) };
}

$('#kb-create-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('#kb-new-name').value.trim();
  busy($('#kb-create'), () => createKb(name));
});

async function deleteKb(name, button) {
  const ok = await confirmAction(t('kbs.confirmDelete', { name }), t('common.delete'));
  if (!ok) {
    button?.focus();
    return;
  }
  try {
    await api(kbPath(name), { method: 'DELETE' });
    showInfo(t('kbs.deleted', { name }));
    if (state.kb === name) selectKb(null);
    await loadKbs();
  } catch (err) {
    showError(err);
  }
}

$('#kbs-refresh').addEventListener('click', (e) => busy(e.currentTarget, loadKbs));

on('access', applyAccess);
on('lang', renderKbs);

// ---- start ------------------------------------------------------------------------------

$('#api-key').value = getKey();
// state.kb stays null until the listing confirms the saved KB still exists.
applyLanguage();
showView(location.hash.slice(1) || 'kbs');
applyAccess();
checkKey();
