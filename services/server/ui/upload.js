// Upload view: files, folders and drag and drop, sent as one multipart upload that the
// server runs as a job; the job's events drive the progress display.

import { api, upload, followJob, jobFinished, kbPath, ApiError } from './api.js';
import { t, tn } from './i18n.js';
import {
  state, on, emit, $, el, canWrite, showInfo, showError, say, splitList,
  fmtNum, fmtBytes, fmtDuration,
} from './ui.js';

const JOB_STORAGE = 'zhiku.uploadJob';

const filesInput = $('#upload-files');
const folderInput = $('#upload-folder');
const dropzone = $('#upload-dropzone');
const startButton = $('#upload-start');
const cancelButton = $('#upload-cancel');
const progressBox = $('#upload-progress');

/** Files dropped on the zone, with the relative path each will be stored under. */
let dropped = [];
/** The upload or job under way: { abort, jobId, info }. */
let current = null;

// ---- choosing files ---------------------------------------------------------------------

/** Hidden files and folders (.git, .DS_Store) are noise in a folder upload, never content. */
const hiddenPath = (path) => path.split('/').some((part) => part.startsWith('.'));

function chosenFiles() {
  const fromFiles = [...filesInput.files].map((file) => ({ file, path: file.name }));
  const fromFolder = [...folderInput.files]
    .map((file) => ({ file, path: file.webkitRelativePath || file.name }))
    .filter(({ path }) => !hiddenPath(path));
  return [...fromFiles, ...fromFolder, ...dropped];
}

function renderSelection() {
  const files = chosenFiles();
  const bytes = files.reduce((sum, f) => sum + f.file.size, 0);
  $('#upload-selection').textContent = files.length
    ? t('upload.selected', { files: tn('upload.nFiles', files.length), size: fmtBytes(bytes) })
    : t('upload.nothingSelected');
  $('#upload-clear').hidden = files.length === 0;
}

function clearSelection() {
  filesInput.value = '';
  folderInput.value = '';
  dropped = [];
  renderSelection();
}

filesInput.addEventListener('change', renderSelection);
folderInput.addEventListener('change', renderSelection);
$('#upload-clear').addEventListener('click', clearSelection);

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

/** Walks a dropped file or folder; `readEntries` returns a folder in batches until empty. */
async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\/+/, '') || file.name });
    return;
  }
  if (!entry.isDirectory) return;
  const reader = entry.createReader();
  for (;;) {
    const batch = await readEntries(reader);
    if (!batch.length) break;
    for (const child of batch) {
      if (!child.name.startsWith('.')) await walk(child, out);
    }
  }
}

// A file dropped beside the zone would make the browser leave the page to open it.
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (e) => {
    if (e.dataTransfer?.types?.includes('Files') && !dropzone.contains(e.target)) {
      e.preventDefault();
      if (type === 'dragover') e.dataTransfer.dropEffect = 'none';
    }
  });
}

dropzone.addEventListener('dragover', (e) => {
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
  dropzone.classList.add('over');
});
dropzone.addEventListener('dragleave', (e) => {
  if (!dropzone.contains(e.relatedTarget)) dropzone.classList.remove('over');
});
dropzone.addEventListener('drop', async (e) => {
  e.preventDefault();
  dropzone.classList.remove('over');
  if (!canWrite(state.kb)) return;
  // Entries must be taken before the first await: the DataTransfer is emptied after.
  const items = [...(e.dataTransfer.items || [])];
  const entries = items
    .filter((item) => item.kind === 'file')
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  const plainFiles = [...e.dataTransfer.files];
  const found = [];
  try {
    if (entries.length && entries.every(Boolean)) {
      for (const entry of entries) await walk(entry, found);
    } else {
      for (const file of plainFiles) found.push({ file, path: file.name });
    }
  } catch (err) {
    showError(err);
  }
  dropped.push(...found);
  renderSelection();
});

// ---- progress ---------------------------------------------------------------------------

function setProgressState(stateName) {
  progressBox.hidden = false;
  progressBox.dataset.state = stateName;
  $('#upload-state-text').textContent = t(`job.${stateName}`);
  const running = stateName === 'uploading' || stateName === 'queued' || stateName === 'running';
  cancelButton.disabled = !running;
  startButton.disabled = running || !canWrite(state.kb);
}

function renderUploadBytes(loaded, total) {
  const bar = $('#upload-bar');
  bar.max = total || 1;
  bar.value = loaded;
  $('#upload-counts').textContent = t('upload.sent', {
    sent: fmtBytes(loaded),
    total: fmtBytes(total),
  });
  $('#upload-stats').textContent = '';
}

function renderJob(info) {
  if (!info) return;
  setProgressState(info.state);
  const bar = $('#upload-bar');
  if (info.files_total > 0) {
    bar.max = info.files_total;
    bar.value = info.files_done;
  } else if (jobFinished(info)) {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute('value'); // indeterminate until the files are counted
  }
  $('#upload-counts').textContent = t('upload.filesDone', {
    done: fmtNum(info.files_done),
    total: fmtNum(info.files_total),
  });
  const parts = [
    tn('upload.chunks', info.chunks_indexed),
    fmtBytes(info.bytes),
    t('upload.rate', {
      files: fmtNum(info.files_per_second, 2),
      chunks: fmtNum(info.chunks_per_second, 1),
    }),
  ];
  if (info.state === 'running' && info.eta_seconds !== null && info.eta_seconds !== undefined) {
    parts.push(t('upload.eta', { eta: fmtDuration(info.eta_seconds) }));
  }
  if (info.files_indexed || info.files_unchanged) {
    parts.push(t('upload.outcomes', {
      indexed: fmtNum(info.files_indexed),
      unchanged: fmtNum(info.files_unchanged),
    }));
  }
  if (info.files_failed) parts.push(tn('upload.failedCount', info.files_failed));
  const ocr = info.ocr;
  if (ocr && ocr.pages_total) {
    parts.push(t('upload.ocr', { done: fmtNum(ocr.pages_done), total: fmtNum(ocr.pages_total) }));
  }
  $('#upload-stats').textContent = parts.join(' · ');
  if (info.message) $('#upload-stats').append(el('span', { class: 'job-message', text: ` — ${info.message}` }));
  renderErrors(info.errors || []);
}

function renderErrors(errors) {
  $('#upload-errors').replaceChildren(
    ...errors.map((err) =>
      el(
        'li',
        { dataset: { code: err.code || '', stage: err.stage || '' } },
        el('span', { class: 'error-file', text: err.name }),
        ' ',
        err.stage ? el('span', { class: 'badge stage', text: t(`stage.${err.stage}`) }) : null,
        ' ',
        el('span', { class: 'error-message', text: err.message }),
        el('code', { class: 'error-code', text: err.code }),
      ),
    ),
  );
  $('#upload-errors-empty').hidden = errors.length > 0;
}

function remember(jobId) {
  try {
    if (jobId) sessionStorage.setItem(JOB_STORAGE, jobId);
    else sessionStorage.removeItem(JOB_STORAGE);
  } catch {
    /* the job can still be followed until the page is left */
  }
}

// ---- running an upload ------------------------------------------------------------------

async function follow(jobId, { resumed = false } = {}) {
  const controller = new AbortController();
  current = { abort: controller, jobId, info: null };
  remember(jobId);
  try {
    const final = await followJob(
      jobId,
      (info) => {
        current.info = info;
        renderJob(info);
      },
      controller.signal,
    );
    renderJob(final);
    announce(final);
    if (final.state === 'succeeded') clearSelection();
  } catch (err) {
    if (resumed && err instanceof ApiError && err.status === 404) {
      progressBox.hidden = true; // the server forgot the job (restart): nothing to show
      progressBox.dataset.state = '';
    } else if (err.name !== 'AbortError') showError(err);
  } finally {
    current = null;
    remember(null);
    emit('kbs-changed');
    emit('documents-changed');
    if (progressBox.dataset.state && !jobFinished({ state: progressBox.dataset.state })) {
      setProgressState('failed');
    }
  }
}

function announce(info) {
  const summary = {
    indexed: fmtNum(info.files_indexed),
    unchanged: fmtNum(info.files_unchanged),
    failed: fmtNum(info.files_failed),
  };
  if (info.state === 'succeeded') {
    if (info.files_failed) say('error', t('upload.doneWithFailures', summary));
    else showInfo(t('upload.done', summary));
  } else if (info.state === 'cancelled') showInfo(t('upload.cancelled'));
  else say('error', info.message ? t('upload.failedMessage', { message: info.message }) : t('upload.failed'));
}

async function start() {
  if (!state.kb) {
    say('error', t('common.needsKb'));
    return;
  }
  if (current) return;
  const files = chosenFiles();
  if (!files.length) {
    say('error', t('upload.nothingSelected'));
    filesInput.focus();
    return;
  }
  const form = new FormData();
  // Tags first: the server reads the parts as they stream in.
  const tags = splitList($('#upload-tags').value);
  if (tags.length) form.append('tags', tags.join(','));
  for (const { file, path } of files) form.append('file', file, path);

  const controller = new AbortController();
  current = { abort: controller, jobId: null, info: null };
  renderErrors([]);
  setProgressState('uploading');
  renderUploadBytes(0, files.reduce((sum, f) => sum + f.file.size, 0));
  let accepted;
  try {
    accepted = await upload(`${kbPath(state.kb)}/documents?wait=false`, form, {
      onProgress: renderUploadBytes,
      signal: controller.signal,
    });
  } catch (err) {
    current = null;
    if (err.name === 'AbortError') {
      setProgressState('cancelled');
      showInfo(t('upload.cancelled'));
      return;
    }
    setProgressState('failed');
    if (err instanceof ApiError && err.files?.length) renderErrors(err.files);
    showError(err);
    return;
  }
  showInfo(t('upload.queued', { files: tn('upload.nFiles', files.length) }));
  current = null;
  await follow(accepted.job_id);
}

$('#upload-form').addEventListener('submit', (e) => {
  e.preventDefault();
  start();
});

cancelButton.addEventListener('click', async () => {
  if (!current) return;
  if (!current.jobId) {
    current.abort.abort(); // still sending: stop the request itself
    return;
  }
  try {
    const info = await api(`/v1/jobs/${encodeURIComponent(current.jobId)}`, { method: 'DELETE' });
    if (info) renderJob(info);
  } catch (err) {
    // 409: the job finished meanwhile; its done event says how.
    if (!(err instanceof ApiError && err.status === 409)) showError(err);
  }
});

function refreshAccess() {
  const busyNow = Boolean(current);
  startButton.disabled = busyNow || !canWrite(state.kb);
}

on('access', refreshAccess);
on('lang', () => {
  renderSelection();
  if (current?.info) renderJob(current.info);
  else if (progressBox.dataset.state) {
    $('#upload-state-text').textContent = t(`job.${progressBox.dataset.state}`);
  }
});

renderSelection();

// A reload while a job runs picks it up again instead of losing sight of it.
try {
  const pending = sessionStorage.getItem(JOB_STORAGE);
  if (pending) follow(pending, { resumed: true });
} catch {
  /* no storage: nothing to resume */
}
