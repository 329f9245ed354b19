// What the views share: the app state and its events, access rules, DOM building, the
// message line, the confirmation dialog and number/date formatting.

import { ApiError } from './api.js';
import { t, locale } from './i18n.js';

/**
 * `scope` and `keyKb` come from GET /v1/auth; `kb` is the knowledge base the views work
 * on; `kbs` the last listing.
 */
export const state = { kb: null, scope: null, keyKb: null, kbs: [], view: 'kbs' };

const handlers = new Map();

export function on(name, fn) {
  if (!handlers.has(name)) handlers.set(name, []);
  handlers.get(name).push(fn);
}

/** Calls every handler; one failing (or rejecting) does not stop the others. */
export function emit(name, arg) {
  for (const fn of handlers.get(name) || []) {
    try {
      const result = fn(arg);
      if (result && typeof result.catch === 'function') result.catch(showError);
    } catch (err) {
      showError(err);
    }
  }
}

/** Whether the key may change knowledge base `kb` (upload, delete, re-upload). */
export function canWrite(kb = state.kb) {
  switch (state.scope) {
    case 'open':
    case 'admin':
      return true;
    case 'write':
      return !state.keyKb || state.keyKb === kb;
    default:
      return false;
  }
}

/** Whether the key may create knowledge bases other than the one it is bound to. */
export function canCreateKb() {
  return state.scope === 'open' || state.scope === 'admin' || (state.scope === 'write' && !state.keyKb);
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/**
 * Builds an element. `attrs`: `class`, `text`, `dataset` (object), `on` (event → handler),
 * boolean properties (`hidden`, `disabled`, `checked`, `open`), anything else as an
 * attribute (skipped when null or false). Children may be strings, nodes, or null.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name === 'on') {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (['hidden', 'disabled', 'checked', 'open', 'multiple'].includes(name)) {
      node[name] = Boolean(value);
    } else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The text to show for a failed call: the key problems in the user's words. */
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return t('err.unauthorized');
    if (err.status === 403) return t('err.forbidden');
    return err.message;
  }
  if (err?.name === 'AbortError') return t('err.aborted');
  if (err instanceof TypeError) return t('err.network');
  return err?.message || String(err);
}

export function say(kind, text) {
  const box = $('#message');
  box.dataset.kind = kind;
  box.textContent = text;
  $('#message-close').hidden = !text;
}

export const showInfo = (text) => say('info', text);

export function showError(err) {
  if (!(err instanceof ApiError)) console.error(err);
  say('error', errorText(err));
}

/** Asks for confirmation with the shared `<dialog>`; resolves to true for OK. */
export function confirmAction(text, okLabel) {
  const dialog = $('#confirm-dialog');
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel || t('confirm.ok');
  dialog.returnValue = '';
  return new Promise((resolve) => {
    // The form's method="dialog" sets returnValue from the button; Escape leaves it ''.
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    $('#confirm-cancel').focus();
  });
}

export function fmtNum(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return new Intl.NumberFormat(locale(), {
    maximumFractionDigits: digits,
    minimumFractionDigits: 0,
  }).format(value);
}

/** Scores keep a fixed number of decimals so that a column of them lines up. */
export function fmtScore(value) {
  if (value === null || value === undefined) return '—';
  return Number(value).toFixed(4);
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = Number(bytes);
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${fmtNum(n, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h) return t('time.hm', { h, m });
  if (m) return t('time.ms', { m, s: rest });
  return t('time.s', { s: rest });
}

export function fmtDate(rfc3339) {
  if (!rfc3339) return '—';
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return rfc3339;
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(date);
}

/** Splits a comma-separated field (either comma, as Chinese keyboards type `，`). */
export function splitList(text) {
  return String(text || '')
    .split(/[,，\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A number input's value, or undefined when empty, so the server's default applies. */
export function numberValue(input) {
  const text = input.value.trim();
  if (text === '') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** Disables a button while `work` runs, so a double click does not send twice. */
export async function busy(button, work) {
  const was = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = was;
    button.removeAttribute('aria-busy');
  }
}
