// Talking to the zhiku API: the key, JSON requests, uploads with progress, Server-Sent
// Events over fetch, and following a job to its end. Nothing here touches the page.

const KEY_STORAGE = 'zhiku.apiKey';

export function getKey() {
  // Storage can throw (disabled cookies, sandboxed frames): the page must still work.
  try {
    return sessionStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* the key then lives only as long as the field's value */
  }
}

/** An answer of the API that is not 2xx, with the server's `ErrorBody` taken apart. */
export class ApiError extends Error {
  constructor(status, code, message, files) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.files = files || [];
  }
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const key = getKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  return headers;
}

function errorFromBody(status, statusText, body) {
  const detail = body && typeof body === 'object' ? body.error : null;
  return new ApiError(
    status,
    detail?.code || `http_${status}`,
    detail?.message || statusText || `HTTP ${status}`,
    detail?.files,
  );
}

async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* a proxy's HTML error page, or an empty body */
  }
  return errorFromBody(response.status, response.statusText, body);
}

/**
 * Sends a request and returns the Response when it is 2xx; throws ApiError otherwise.
 * `json` is sent as the JSON body; `body` as is (FormData, Blob).
 */
/**
 * API paths are written from the root ('/v1/...') but requested relative to the page, so
 * the page keeps working behind a proxy that serves zhiku under a path prefix.
 */
export function relative(path) {
  return path.replace(/^\//, '');
}

export async function request(path, { method = 'GET', json, body, signal, accept } = {}) {
  const headers = authHeaders();
  if (json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(json);
  }
  if (accept) headers.set('Accept', accept);
  const response = await fetch(relative(path), { method, headers, body, signal, cache: 'no-store' });
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

/** A JSON request: the parsed body, or null for an empty one (204). */
export async function api(path, options) {
  const response = await request(path, options);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export function kbPath(kb) {
  return `/v1/kbs/${encodeURIComponent(kb)}`;
}

/** Document ids may hold `/`: the server reads the rest of the path as the id. */
export function docPath(kb, id) {
  return `${kbPath(kb)}/documents/${id.split('/').map(encodeURIComponent).join('/')}`;
}

/**
 * POSTs a multipart form with XMLHttpRequest, because fetch cannot report how much of a
 * large upload has been sent. Resolves to the parsed JSON answer.
 */
export function upload(path, form, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', relative(path));
    authHeaders().forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.responseType = 'text';
    if (onProgress) {
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable) onProgress(e.loaded, e.total);
      });
    }
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        /* not JSON: reported by status below */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(errorFromBody(xhr.status, xhr.statusText, body));
    });
    xhr.addEventListener('error', () => reject(new TypeError('network error')));
    xhr.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException('aborted', 'AbortError'));
        return;
      }
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(form);
  });
}

/**
 * Reads a text/event-stream body and calls `onEvent(type, data)` per event. EventSource
 * would do this, but it can neither POST nor send the Authorization header.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let type = '';
  let data = [];

  const dispatch = () => {
    if (data.length) onEvent(type || 'message', data.join('\n'));
    type = '';
    data = [];
  };

  const line = (text) => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return undefined; // keep-alive comment
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    return undefined;
  };

  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    // A chunk may end between the \r and \n of one line break: keep a trailing \r back.
    let cut;
    while ((cut = buffer.search(/\r\n|\n|\r(?=.)/s)) >= 0) {
      const breakLength = buffer.startsWith('\r\n', cut) ? 2 : 1;
      line(buffer.slice(0, cut));
      buffer = buffer.slice(cut + breakLength);
    }
    if (done) {
      if (buffer.replace(/\r$/, '')) line(buffer.replace(/\r$/, ''));
      dispatch();
      return;
    }
  }
}

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

export function jobFinished(info) {
  return FINISHED.has(info?.state);
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(new DOMException('aborted', 'AbortError'));
      },
      { once: true },
    );
  });

/**
 * Follows a job's events until its `done` event and resolves to the final JobInfo.
 * A stream that breaks off (proxy timeout, sleep) is picked up again: the first event of
 * a new subscription is the job's current state, so nothing is lost.
 */
export async function followJob(id, onUpdate, signal) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  for (let attempt = 0; ; attempt += 1) {
    let final = null;
    try {
      const response = await request(`${path}/events`, { signal, accept: 'text/event-stream' });
      await readEvents(response, (type, data) => {
        let info;
        try {
          info = JSON.parse(data);
        } catch {
          return;
        }
        onUpdate(info);
        if (type === 'done') final = info;
      });
    } catch (err) {
      if (err.name === 'AbortError' || (err instanceof ApiError && err.status !== 504)) throw err;
      if (attempt >= 20) throw err;
    }
    if (final) return final;
    const info = await api(path, { signal });
    onUpdate(info);
    if (jobFinished(info)) return info;
    await sleep(Math.min(1000 * (attempt + 1), 5000), signal);
  }
}

/** Fetches a file with the key and hands it to the browser as a download. */
export async function download(path, filename) {
  const response = await request(path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The click only starts the download; revoking at once can cancel it in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob;
}
