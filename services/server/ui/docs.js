// The API reference at /docs, rendered here from /openapi.json so that it needs nothing
// beyond this server: operations by tag, their parameters, bodies and responses, and the
// schemas as collapsible trees whose $refs open on demand.

import { t, extend, applyI18n, getLang, setLang, locale } from './i18n.js';
import { getKey } from './api.js';

extend({
  en: {
    'ref.title': 'zhiku API reference',
    'ref.back': 'Back to the web UI',
    'ref.contents': 'Contents',
    'ref.filter': 'Filter',
    'ref.filterPlaceholder': 'path, method or word',
    'ref.expandAll': 'Expand all',
    'ref.collapseAll': 'Collapse all',
    'ref.loading': 'Loading the API description…',
    'ref.failed': 'The API description could not be loaded: {message}',
    'ref.noMatches': 'Nothing matches the filter.',
    'ref.schemas': 'Schemas',
    'ref.version': 'version {version}',
    'ref.other': 'Other',
    'ref.parameters': 'Parameters',
    'ref.requestBody': 'Request body',
    'ref.responses': 'Responses',
    'ref.name': 'Name',
    'ref.in': 'In',
    'ref.type': 'Type',
    'ref.description': 'Description',
    'ref.required': 'required',
    'ref.optional': 'optional',
    'ref.auth': 'Needs an API key: {schemes}',
    'ref.noAuth': 'No API key needed.',
    'ref.enum': 'one of',
    'ref.default': 'default',
    'ref.min': 'min',
    'ref.max': 'max',
    'ref.oneOf': 'One of:',
    'ref.anyOf': 'Any of:',
    'ref.allOf': 'All of:',
    'ref.any': 'any',
    'ref.example': 'Example',
    'ref.noBody': 'No body.',
    'ref.noProps': 'Any JSON object.',
    'ref.additional': 'other keys',
    'ref.deprecated': 'deprecated',
    'ref.in.path': 'path',
    'ref.in.query': 'query',
    'ref.in.header': 'header',
    'ref.in.cookie': 'cookie',
  },
  zh: {
    'ref.title': '知库 API 文档',
    'ref.back': '返回网页界面',
    'ref.contents': '目录',
    'ref.filter': '筛选',
    'ref.filterPlaceholder': '路径、方法或关键词',
    'ref.expandAll': '全部展开',
    'ref.collapseAll': '全部折叠',
    'ref.loading': '正在加载 API 描述…',
    'ref.failed': '无法加载 API 描述：{message}',
    'ref.noMatches': '没有符合筛选条件的内容。',
    'ref.schemas': '数据结构',
    'ref.version': '版本 {version}',
    'ref.other': '其他',
    'ref.parameters': '参数',
    'ref.requestBody': '请求体',
    'ref.responses': '响应',
    'ref.name': '名称',
    'ref.in': '位置',
    'ref.type': '类型',
    'ref.description': '说明',
    'ref.required': '必填',
    'ref.optional': '可选',
    'ref.auth': '需要 API 密钥：{schemes}',
    'ref.noAuth': '无需 API 密钥。',
    'ref.enum': '可选值',
    'ref.default': '默认',
    'ref.min': '最小',
    'ref.max': '最大',
    'ref.oneOf': '以下之一：',
    'ref.anyOf': '以下任意：',
    'ref.allOf': '同时满足：',
    'ref.any': '任意',
    'ref.example': '示例',
    'ref.noBody': '无响应体。',
    'ref.noProps': '任意 JSON 对象。',
    'ref.additional': '其他键',
    'ref.deprecated': '已弃用',
    'ref.in.path': '路径',
    'ref.in.query': '查询',
    'ref.in.header': '请求头',
    'ref.in.cookie': 'Cookie',
  },
});

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const $ = (selector) => document.querySelector(selector);

let spec = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'open') node.open = Boolean(value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const slug = (text) => String(text).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** `code` spans of a description line; everything else stays plain text (never HTML). */
function inline(text) {
  return String(text)
    .split(/(`[^`]+`)/)
    .map((part) => (part.startsWith('`') && part.endsWith('`') && part.length > 1
      ? el('code', { text: part.slice(1, -1) })
      : part));
}

/** Descriptions are wrapped at ~90 columns: single newlines join, blank lines split. */
function prose(text, cls = 'prose') {
  if (!text) return null;
  return el(
    'div',
    { class: cls },
    String(text)
      .split(/\n\s*\n/)
      .map((para) => el('p', {}, inline(para.replace(/\s*\n\s*/g, ' ')))),
  );
}

function refName(ref) {
  return ref.split('/').pop();
}

function resolve(ref) {
  if (!ref.startsWith('#/')) return null;
  let node = spec;
  for (const part of ref.slice(2).split('/')) {
    node = node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node || null;
}

const isNull = (s) => s && (s.type === 'null' || (Array.isArray(s.type) && s.type.length === 1 && s.type[0] === 'null'));

/** A short type, with links for named schemas: `KbInfo`, `string | null`, `Citation[]`. */
function typeLabel(schema) {
  if (!schema || typeof schema !== 'object' || Object.keys(schema).length === 0) return [t('ref.any')];
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return [el('a', { href: `#schema-${slug(name)}`, class: 'schema-link', text: name })];
  }
  const variants = schema.oneOf || schema.anyOf;
  if (variants) {
    // `null` last: "Citation | null" reads as an optional Citation.
    const ordered = [...variants.filter((v) => !isNull(v)), ...variants.filter(isNull)];
    const parts = ordered.map(typeLabel);
    return parts.flatMap((p, i) => (i ? [' | ', ...p] : p));
  }
  if (schema.allOf) {
    if (schema.allOf.length === 1) return typeLabel(schema.allOf[0]);
    return schema.allOf.flatMap((p, i) => (i ? [' & ', ...typeLabel(p)] : typeLabel(p)));
  }
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (!types.length) return [schema.properties ? 'object' : schema.enum ? 'enum' : t('ref.any')];
  return types.flatMap((type, i) => {
    let label;
    if (type === 'array') label = [...typeLabel(schema.items), '[]'];
    else label = [schema.format && type !== 'null' ? `${type} (${schema.format})` : type];
    return i ? [' | ', ...label] : label;
  });
}

function constraints(schema) {
  if (!schema || typeof schema !== 'object') return null;
  const parts = [];
  if (schema.enum) {
    parts.push(el('span', {}, `${t('ref.enum')}: `, schema.enum.map((v, i) => [i ? ', ' : '', el('code', { text: JSON.stringify(v) })])));
  }
  if (schema.default !== undefined && schema.default !== null) {
    parts.push(el('span', {}, `${t('ref.default')}: `, el('code', { text: JSON.stringify(schema.default) })));
  }
  if (schema.minimum !== undefined && schema.minimum !== 0) parts.push(`${t('ref.min')} ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`${t('ref.max')} ${schema.maximum}`);
  if (schema.deprecated) parts.push(t('ref.deprecated'));
  if (!parts.length) return null;
  return el('div', { class: 'constraints' }, parts.map((p, i) => [i ? ' · ' : '', p]));
}

/**
 * What a schema contains, one level down: its properties, an array's items, the variants
 * of a oneOf, the parts of an allOf. `seen` holds the $refs being expanded above, so a
 * recursive schema stops instead of looping.
 */
function children(schema, seen) {
  if (!schema || typeof schema !== 'object') return [];
  if (schema.$ref) {
    const name = refName(schema.$ref);
    if (seen.has(name)) return [];
    const target = resolve(schema.$ref);
    return target ? children(target, new Set([...seen, name])) : [];
  }
  const variants = schema.oneOf || schema.anyOf;
  if (variants) {
    const real = variants.filter((v) => !isNull(v));
    // `X | null` is just an optional X: show X's contents directly.
    if (real.length === 1) return children(real[0], seen);
    return [
      el('li', { class: 'variants-label', text: schema.oneOf ? t('ref.oneOf') : t('ref.anyOf') }),
      ...real.map((v, i) => node(`#${i + 1}`, v, false, seen, { variant: true })),
    ];
  }
  if (schema.allOf) return schema.allOf.flatMap((part) => children(part, seen));
  const items = [];
  if (schema.properties) {
    const required = new Set(schema.required || []);
    for (const [name, prop] of Object.entries(schema.properties)) {
      items.push(node(name, prop, required.has(name), seen));
    }
  }
  if (schema.items && (schema.type === 'array' || (Array.isArray(schema.type) && schema.type.includes('array')))) {
    items.push(...children(schema.items, seen));
  }
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    items.push(node(`{${t('ref.additional')}}`, schema.additionalProperties, false, seen));
  }
  return items;
}

/** Whether a schema has anything to unfold, without building it. */
function expandable(schema, seen) {
  if (!schema || typeof schema !== 'object') return false;
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return !seen.has(name) && expandable(resolve(schema.$ref), new Set([...seen, name]));
  }
  const variants = schema.oneOf || schema.anyOf;
  if (variants) return variants.some((v) => !isNull(v) && expandable(v, seen));
  if (schema.allOf) return schema.allOf.some((v) => expandable(v, seen));
  if (schema.properties && Object.keys(schema.properties).length) return true;
  if (schema.items) return expandable(schema.items, seen);
  return Boolean(schema.additionalProperties && typeof schema.additionalProperties === 'object');
}

/** One property of a tree: name, type, required, description; its contents unfold on demand. */
function node(name, schema, required, seen, { variant = false } = {}) {
  const described = schema?.description
    || (schema?.oneOf || schema?.anyOf || []).find((v) => v.description)?.description
    || (schema?.$ref ? resolve(schema.$ref)?.description : null);
  const head = el(
    'span',
    { class: 'prop-head' },
    el('code', { class: variant ? 'prop-name variant' : 'prop-name', text: name }),
    ' ',
    el('span', { class: 'prop-type' }, typeLabel(schema)),
    required ? el('span', { class: 'badge required', text: t('ref.required') }) : null,
  );
  const body = [prose(described, 'prop-desc'), constraints(schema?.$ref ? resolve(schema.$ref) : schema)];
  if (!expandable(schema, seen)) return el('li', { class: 'prop leaf' }, head, body);
  const list = el('ul', { class: 'tree' });
  const details = el('details', { class: 'prop-fold' }, el('summary', {}, head), body, list);
  // Built on first opening: every $ref unfolded eagerly would repeat the whole schema
  // graph under every operation.
  details.addEventListener('toggle', () => {
    if (details.open && !list.childElementCount) list.append(...children(schema, seen));
  });
  return el('li', { class: 'prop' }, details);
}

/** A schema shown at the top of a body or response: its type, description and contents. */
function schemaBlock(schema) {
  const target = schema?.$ref ? resolve(schema.$ref) : schema;
  const head = el('p', { class: 'schema-head' }, el('span', { class: 'prop-type' }, typeLabel(schema)));
  const items = children(schema, new Set());
  return el(
    'div',
    { class: 'schema-block' },
    head,
    schema?.$ref ? prose(target?.description, 'prop-desc') : null,
    constraints(target),
    items.length ? el('ul', { class: 'tree' }, items) : null,
  );
}

function content(contentMap) {
  if (!contentMap || !Object.keys(contentMap).length) return el('p', { class: 'hint', text: t('ref.noBody') });
  return Object.entries(contentMap).map(([type, media]) =>
    el(
      'div',
      { class: 'media' },
      el('p', {}, el('code', { class: 'media-type', text: type })),
      media.schema ? schemaBlock(media.schema) : null,
      media.example !== undefined
        ? el(
            'details',
            { class: 'example' },
            el('summary', { text: t('ref.example') }),
            el('pre', { text: typeof media.example === 'string' ? media.example : JSON.stringify(media.example, null, 2) }),
          )
        : null,
    ),
  );
}

function parametersTable(params) {
  return el(
    'table',
    { class: 'data-table params' },
    el('thead', {}, el('tr', {}, ['ref.name', 'ref.in', 'ref.type', 'ref.description'].map((k) => el('th', { scope: 'col', text: t(k) })))),
    el(
      'tbody',
      {},
      params.map((p) =>
        el(
          'tr',
          {},
          el('td', {}, el('code', { text: p.name }), p.required ? el('span', { class: 'badge required', text: t('ref.required') }) : null),
          el('td', { text: t(`ref.in.${p.in}`) }),
          el('td', {}, typeLabel(p.schema)),
          el('td', {}, prose(p.description, 'prop-desc'), constraints(p.schema)),
        ),
      ),
    ),
  );
}

function statusClass(code) {
  return `status-${String(code)[0]}xx`;
}

function operation(path, method, op, pathParams) {
  const id = `op-${slug(op.operationId || `${method}-${path}`)}`;
  const params = [...pathParams, ...(op.parameters || [])].map((p) => (p.$ref ? resolve(p.$ref) : p));
  const body = op.requestBody?.$ref ? resolve(op.requestBody.$ref) : op.requestBody;
  const security = op.security ?? spec.security ?? [];
  const schemes = security.flatMap((s) => Object.keys(s));
  const details = el(
    'details',
    { class: 'op', id, 'data-search': `${method} ${path} ${op.summary || ''} ${op.operationId || ''} ${(op.tags || []).join(' ')}`.toLowerCase() },
    el(
      'summary',
      {},
      el('span', { class: `method method-${method}`, text: method.toUpperCase() }),
      el('code', { class: 'op-path', text: path }),
      el('span', { class: 'op-summary', text: op.summary || '' }),
    ),
    el(
      'div',
      { class: 'op-body' },
      prose(op.description),
      el('p', { class: 'hint auth' }, schemes.length ? t('ref.auth', { schemes: schemes.join(', ') }) : t('ref.noAuth')),
      params.length ? [el('h4', { text: t('ref.parameters') }), parametersTable(params)] : null,
      body
        ? [
            el('h4', {}, t('ref.requestBody'), body.required ? el('span', { class: 'badge required', text: t('ref.required') }) : null),
            prose(body.description),
            content(body.content),
          ]
        : null,
      el('h4', { text: t('ref.responses') }),
      el(
        'dl',
        { class: 'responses' },
        Object.entries(op.responses || {}).map(([code, response]) => {
          const r = response.$ref ? resolve(response.$ref) : response;
          return [
            el('dt', {}, el('span', { class: `badge status ${statusClass(code)}`, text: code })),
            el('dd', {}, prose(r?.description), r?.content ? content(r.content) : null),
          ];
        }),
      ),
    ),
  );
  return { id, details, method, path, summary: op.summary || '' };
}

function render() {
  $('#ref-version').hidden = !spec.info?.version;
  $('#ref-version').textContent = t('ref.version', { version: spec.info?.version || '' });
  $('#ref-intro').replaceChildren(el('h2', { text: spec.info?.title || 'API' }), prose(spec.info?.description));

  // Tags in the order the document declares them, then any it uses without declaring.
  const groups = new Map();
  for (const tag of spec.tags || []) groups.set(tag.name, { tag, ops: [] });
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const name = op.tags?.[0] || t('ref.other');
      if (!groups.has(name)) groups.set(name, { tag: { name }, ops: [] });
      groups.get(name).ops.push(operation(path, method, op, item.parameters || []));
    }
  }

  const sections = [];
  const toc = [];
  for (const { tag, ops } of groups.values()) {
    if (!ops.length) continue;
    const sectionId = `tag-${slug(tag.name)}`;
    sections.push(
      el('section', { class: 'tag-section', id: sectionId, 'aria-labelledby': `${sectionId}-h` },
        el('h2', { id: `${sectionId}-h`, text: tag.name }),
        prose(tag.description),
        ops.map((o) => o.details)),
    );
    toc.push(
      el('div', { class: 'toc-group', 'data-tag': sectionId },
        el('a', { class: 'toc-tag', href: `#${sectionId}`, text: tag.name }),
        el('ul', {}, ops.map((o) =>
          el('li', { 'data-op': o.id },
            el('a', { href: `#${o.id}` }, el('span', { class: `method method-${o.method}`, text: o.method.toUpperCase() }), ' ', o.path))))),
    );
  }
  $('#ref-operations').replaceChildren(...sections);

  const schemas = Object.entries(spec.components?.schemas || {});
  $('#ref-schemas').hidden = schemas.length === 0;
  $('#ref-schema-list').replaceChildren(
    ...schemas.map(([name, schema]) =>
      el('details', { class: 'schema', id: `schema-${slug(name)}`, 'data-search': name.toLowerCase() },
        el('summary', {}, el('code', { text: name })),
        schemaBlock(schema))),
  );
  toc.push(el('div', { class: 'toc-group', 'data-tag': 'schemas' }, el('a', { class: 'toc-tag', href: '#ref-schemas', text: t('ref.schemas') })));
  $('#ref-toc').replaceChildren(...toc);
  applyFilter();
  openTarget();
}

/** Opens the operation or schema the URL names, and every fold around it. */
function openTarget() {
  let id;
  try {
    id = decodeURIComponent(location.hash.slice(1));
  } catch {
    return; // a hand-typed hash that is not valid percent-encoding
  }
  if (!id) return;
  const target = document.getElementById(id);
  if (!target) return;
  for (let n = target; n; n = n.parentElement) if (n.tagName === 'DETAILS') n.open = true;
  target.scrollIntoView({ block: 'start' });
}

function applyFilter() {
  const query = $('#ref-filter').value.trim().toLowerCase();
  let shown = 0;
  for (const section of document.querySelectorAll('.tag-section')) {
    let any = false;
    for (const op of section.querySelectorAll('details.op')) {
      const match = !query || op.dataset.search.includes(query);
      op.hidden = !match;
      any ||= match;
      document.querySelector(`[data-op="${op.id}"]`)?.toggleAttribute('hidden', !match);
    }
    section.hidden = !any;
    document.querySelector(`[data-tag="${section.id}"]`)?.toggleAttribute('hidden', !any);
    if (any) shown += 1;
  }
  let schemasShown = 0;
  for (const schema of document.querySelectorAll('details.schema')) {
    const match = !query || schema.dataset.search.includes(query);
    schema.hidden = !match;
    if (match) schemasShown += 1;
  }
  $('#ref-schemas').hidden = schemasShown === 0;
  const status = $('#ref-status');
  if (spec) {
    status.hidden = shown + schemasShown > 0;
    status.textContent = t('ref.noMatches');
  }
}

function setAll(open) {
  for (const op of document.querySelectorAll('details.op, details.schema')) {
    if (!op.hidden) op.open = open;
  }
}

function applyLanguage() {
  document.documentElement.lang = locale();
  applyI18n(document);
  $('#lang-select').value = getLang();
  if (spec) render();
}

async function load() {
  try {
    // The document needs no key today; sending the page's key keeps it working if it ever does.
    const headers = { Accept: 'application/json' };
    if (getKey()) headers.Authorization = `Bearer ${getKey()}`;
    const response = await fetch('openapi.json', { headers }); // relative: works under a proxy's path prefix
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    spec = await response.json();
    $('#ref-status').hidden = true;
    render();
  } catch (err) {
    const status = $('#ref-status');
    status.dataset.kind = 'error';
    status.textContent = t('ref.failed', { message: err.message });
  }
}

$('#lang-select').addEventListener('change', (e) => {
  setLang(e.target.value);
  applyLanguage();
});
$('#ref-filter').addEventListener('input', applyFilter);
$('#ref-expand').addEventListener('click', () => setAll(true));
$('#ref-collapse').addEventListener('click', () => setAll(false));
window.addEventListener('hashchange', openTarget);

applyLanguage();
load();
