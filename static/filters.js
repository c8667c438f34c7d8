// The view state (filters, order, pause, row cap) and its round trip through the page
// URL, plus the queries it gives the stream and the export. Pure functions only, so a
// link reproduces a view and the tests can run them without a page.

const STREAM_PATH = '/api/spend/stream';
const EXPORT_PATH = '/api/spend/export';

export const DEFAULT_MAX_ROWS = 50_000;
export const MIN_MAX_ROWS = 100;
export const MAX_MAX_ROWS = 200_000;
// Rows the stream sends before the live tail; the server caps it at its backfill_cap.
export const DEFAULT_BACKFILL = 1000;
export const MAX_BACKFILL = 10_000;

/** Time range presets, in milliseconds before now. */
export const RANGE_PRESETS = Object.freeze({
  '15m': 15 * 60 * 1000,
  '1h': 60 * 60 * 1000,
  '24h': 24 * 60 * 60 * 1000,
  '7d': 7 * 24 * 60 * 60 * 1000,
});
export const CUSTOM_RANGE = 'custom';

export const ORDERS = Object.freeze({ newest: 'newest', tail: 'tail' });

// Filters the server applies: changing one restarts the stream.
export const SERVER_FILTERS = ['model', 'model_group', 'status', 'error_code'];
// Filters the page applies to rows it holds: key alias, team, user (exact) and free text.
export const PAGE_FILTERS = ['key_alias', 'team', 'user'];

// Entry fields matched by the free text filter. The export endpoint searches the same ones.
export const TEXT_FIELDS = [
  'request_id',
  'model',
  'model_group',
  'provider',
  'status',
  'error_code',
  'error_class',
  'error_message',
  'key_alias',
  'team_id',
  'user',
  'end_user',
];
// Page filter name -> entry field it must equal.
const PAGE_FILTER_FIELDS = { key_alias: 'key_alias', team: 'team_id', user: 'user' };

const STATUSES = ['success', 'failure'];
const ERROR_CODE_PATTERN = /^[0-9]{3}$/;
const MAX_FILTER_CHARS = 200;

/** Returns the view of a fresh page without query parameters. */
export function defaultViewState() {
  return {
    model: '',
    model_group: '',
    status: '',
    error_code: '',
    range: '',
    since: '',
    until: '',
    key_alias: '',
    team: '',
    user: '',
    q: '',
    order: ORDERS.newest,
    paused: false,
    maxRows: DEFAULT_MAX_ROWS,
    limit: DEFAULT_BACKFILL,
  };
}

function readText(params, name) {
  const value = params.get(name) ?? '';
  return value.length <= MAX_FILTER_CHARS ? value : '';
}

function readInteger(params, name, { min, max, fallback }) {
  const text = params.get(name);
  if (text === null || !/^[0-9]+$/.test(text)) {
    return fallback;
  }
  const value = Number(text);
  return value >= min && value <= max ? value : fallback;
}

function isValidTime(text) {
  return text !== '' && !Number.isNaN(new Date(text).getTime());
}

/**
 * Reads a view state from a query string such as location.search. Values that are
 * invalid (an unknown status, an error code that is not 3 digits, a date that does
 * not parse) are dropped, so a hand-edited link never sends the stream a bad query.
 */
export function parseViewState(search) {
  const params = new URLSearchParams(search);
  const state = defaultViewState();
  for (const name of ['model', 'model_group', 'key_alias', 'team', 'user', 'q']) {
    state[name] = readText(params, name);
  }
  const status = params.get('status') ?? '';
  state.status = STATUSES.includes(status) ? status : '';
  const errorCode = params.get('error_code') ?? '';
  state.error_code = ERROR_CODE_PATTERN.test(errorCode) ? errorCode : '';

  const since = params.get('since') ?? '';
  const until = params.get('until') ?? '';
  state.since = isValidTime(since) ? since : '';
  state.until = isValidTime(until) ? until : '';
  const range = params.get('range') ?? '';
  if (Object.hasOwn(RANGE_PRESETS, range)) {
    state.range = range;
    state.since = '';
    state.until = '';
  } else if (state.since || state.until) {
    state.range = CUSTOM_RANGE;
  }

  state.order = params.get('order') === ORDERS.tail ? ORDERS.tail : ORDERS.newest;
  state.paused = params.get('paused') === '1';
  state.maxRows = readInteger(params, 'max_rows', {
    min: MIN_MAX_ROWS,
    max: MAX_MAX_ROWS,
    fallback: DEFAULT_MAX_ROWS,
  });
  state.limit = readInteger(params, 'limit', { min: 1, max: MAX_BACKFILL, fallback: DEFAULT_BACKFILL });
  return state;
}

/** Writes a view state as a query string ("" or "?…"), leaving out default values. */
export function serializeViewState(state) {
  const params = new URLSearchParams();
  for (const name of [...SERVER_FILTERS, ...PAGE_FILTERS, 'q']) {
    if (state[name]) {
      params.set(name, state[name]);
    }
  }
  if (state.range === CUSTOM_RANGE) {
    if (state.since) {
      params.set('since', state.since);
    }
    if (state.until) {
      params.set('until', state.until);
    }
  } else if (state.range) {
    params.set('range', state.range);
  }
  if (state.order !== ORDERS.newest) {
    params.set('order', state.order);
  }
  if (state.paused) {
    params.set('paused', '1');
  }
  if (state.maxRows !== DEFAULT_MAX_ROWS) {
    params.set('max_rows', String(state.maxRows));
  }
  if (state.limit !== DEFAULT_BACKFILL) {
    params.set('limit', String(state.limit));
  }
  const query = params.toString();
  return query ? `?${query}` : '';
}

/** Returns the time window of a view as ISO strings ("" for an open end). */
export function timeWindow(state, now = Date.now()) {
  if (Object.hasOwn(RANGE_PRESETS, state.range)) {
    return { since: new Date(now - RANGE_PRESETS[state.range]).toISOString(), until: '' };
  }
  if (state.range === CUSTOM_RANGE) {
    return { since: state.since, until: state.until };
  }
  return { since: '', until: '' };
}

function serverParams(state, now) {
  const params = new URLSearchParams();
  for (const name of SERVER_FILTERS) {
    if (state[name]) {
      params.set(name, state[name]);
    }
  }
  const window = timeWindow(state, now);
  if (window.since) {
    params.set('since', window.since);
  }
  if (window.until) {
    params.set('until', window.until);
  }
  return params;
}

/**
 * Returns the stream URL of a view. `after` is the last event id when the page
 * rebuilds a dropped connection, so the server resumes instead of starting over.
 */
export function streamUrl(state, { now = Date.now(), after = '' } = {}) {
  const params = serverParams(state, now);
  params.set('limit', String(state.limit));
  if (after) {
    params.set('after', after);
  }
  return `${STREAM_PATH}?${params}`;
}

/** Returns the export URL of a view: server filters, page filters and free text. */
export function exportUrl(state, format, { now = Date.now() } = {}) {
  const params = serverParams(state, now);
  for (const name of [...PAGE_FILTERS, 'q']) {
    if (state[name]) {
      params.set(name, state[name]);
    }
  }
  params.set('format', format);
  return `${EXPORT_PATH}?${params}`;
}

/** Returns a key that changes exactly when the stream has to start over. */
export function serverQueryKey(state) {
  const parts = SERVER_FILTERS.map((name) => state[name]);
  parts.push(
    state.range,
    state.range === CUSTOM_RANGE ? state.since : '',
    state.range === CUSTOM_RANGE ? state.until : '',
    state.limit,
  );
  return JSON.stringify(parts);
}

/** Returns the lower-case text that the free text filter searches in an entry. */
export function searchTextOf(entry) {
  const parts = [];
  for (const field of TEXT_FIELDS) {
    const value = entry[field];
    if (value !== null && value !== undefined && value !== '') {
      parts.push(String(value).toLowerCase());
    }
  }
  return parts.join('\n');
}

/** Returns true when the view filters the rows held by key alias, team, user or text. */
export function hasPageFilters(state) {
  return PAGE_FILTERS.some((name) => state[name]) || state.q.trim() !== '';
}

/**
 * Returns a predicate for the page-side filters of a view, or null when the view has
 * none. The predicate takes a row record ({ entry, text }) and caches the entry's
 * search text on the record.
 */
export function createRowMatcher(state) {
  const exact = PAGE_FILTERS.filter((name) => state[name]).map((name) => [
    PAGE_FILTER_FIELDS[name],
    state[name],
  ]);
  const needle = state.q.trim().toLowerCase();
  if (exact.length === 0 && needle === '') {
    return null;
  }
  return (record) => {
    for (const [field, expected] of exact) {
      if (record.entry[field] !== expected) {
        return false;
      }
    }
    if (needle === '') {
      return true;
    }
    record.text ??= searchTextOf(record.entry);
    return record.text.includes(needle);
  };
}
