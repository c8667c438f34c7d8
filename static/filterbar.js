// The filter bar and toolbar controls. It shows a view state in the form controls and
// reports each edit as a patch of that state: page-side filters on every keystroke,
// server-side filters when a field is committed (Enter, blur or a select change).

import { CUSTOM_RANGE, MAX_MAX_ROWS, MIN_MAX_ROWS, ORDERS } from './filters.js';

const SELECTORS = {
  form: '#filter-form',
  q: '#filter-q',
  model: '#filter-model',
  modelGroup: '#filter-model-group',
  status: '#filter-status',
  errorCode: '#filter-error-code',
  keyAlias: '#filter-key-alias',
  team: '#filter-team',
  user: '#filter-user',
  range: '#filter-range',
  customRange: '#custom-range',
  since: '#filter-since',
  until: '#filter-until',
  clear: '#clear-filters',
  order: '#order-toggle',
  pause: '#pause-toggle',
  maxRows: '#max-rows',
  exportCsv: '#export-csv',
  exportJsonl: '#export-jsonl',
  modelOptions: '#model-options',
  groupOptions: '#group-options',
  keyOptions: '#key-options',
  teamOptions: '#team-options',
  userOptions: '#user-options',
};

// Text inputs: state key -> element name. Server ones apply on "change", page ones on "input".
const SERVER_TEXT = { model: 'model', model_group: 'modelGroup', error_code: 'errorCode' };
const PAGE_TEXT = { q: 'q', key_alias: 'keyAlias', team: 'team', user: 'user' };
// Distinct values offered as suggestions, per field.
const MAX_SUGGESTIONS = 200;
const SUGGESTION_FIELDS = [
  ['model', 'modelOptions'],
  ['model_group', 'groupOptions'],
  ['key_alias', 'keyOptions'],
  ['team_id', 'teamOptions'],
  ['user', 'userOptions'],
];

function findElements(root) {
  const elements = {};
  for (const [name, selector] of Object.entries(SELECTORS)) {
    const element = root.querySelector(selector);
    if (element === null) {
      throw new Error(`Missing element ${selector} in the viewer page. Check that index.html contains it.`);
    }
    elements[name] = element;
  }
  return elements;
}

function padTwo(value) {
  return String(value).padStart(2, '0');
}

/** Converts an ISO time to a datetime-local input value in the browser's time zone. */
export function isoToLocalInput(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) {
    return '';
  }
  const day = `${date.getFullYear()}-${padTwo(date.getMonth() + 1)}-${padTwo(date.getDate())}`;
  return `${day}T${padTwo(date.getHours())}:${padTwo(date.getMinutes())}`;
}

/** Converts a datetime-local input value (local time) to an ISO time in UTC. */
export function localInputToIso(value) {
  const date = new Date(value);
  return value && !Number.isNaN(date.getTime()) ? date.toISOString() : '';
}

/**
 * Binds the controls under `root`. `onChange(patch)` receives the changed state
 * fields; the caller decides what restarts the stream.
 */
export function createFilterBar(root, { onChange }) {
  const elements = findElements(root);
  const suggestions = new Map(SUGGESTION_FIELDS.map(([field]) => [field, new Set()]));
  let paused = false;
  let order = ORDERS.newest;

  function showState(state) {
    for (const [key, name] of Object.entries({ ...SERVER_TEXT, ...PAGE_TEXT })) {
      if (elements[name].value !== state[key]) {
        elements[name].value = state[key];
      }
    }
    elements.status.value = state.status;
    elements.range.value = state.range;
    elements.customRange.hidden = state.range !== CUSTOM_RANGE;
    elements.since.value = isoToLocalInput(state.since);
    elements.until.value = isoToLocalInput(state.until);
    elements.maxRows.value = String(state.maxRows);
    paused = state.paused;
    order = state.order;
    elements.pause.setAttribute('aria-pressed', String(paused));
    elements.pause.textContent = paused ? 'Resume' : 'Pause';
    elements.order.setAttribute('aria-pressed', String(order === ORDERS.tail));
    elements.order.textContent = order === ORDERS.tail ? 'Order: oldest on top' : 'Order: newest on top';
  }

  function setExportLinks({ csv, jsonl }) {
    elements.exportCsv.href = csv;
    elements.exportJsonl.href = jsonl;
  }

  /** Offers the entry's model, group, key alias, team and user as input suggestions. */
  function suggestFrom(entry) {
    for (const [field, listName] of SUGGESTION_FIELDS) {
      const value = entry[field];
      const seen = suggestions.get(field);
      if (!value || seen.has(value) || seen.size >= MAX_SUGGESTIONS) {
        continue;
      }
      seen.add(value);
      const option = document.createElement('option');
      option.value = value;
      elements[listName].append(option);
    }
  }

  function bindText(key, name, eventName) {
    elements[name].addEventListener(eventName, () => {
      const input = elements[name];
      if (!input.checkValidity()) {
        return;
      }
      onChange({ [key]: input.value.trim() });
    });
  }

  // The server rejects a window that ends before it starts, so such a range is not applied.
  function commitCustomRange() {
    const since = localInputToIso(elements.since.value);
    const until = localInputToIso(elements.until.value);
    const backwards = since !== '' && until !== '' && since > until;
    elements.until.setCustomValidity(backwards ? 'The end must not be before the start.' : '');
    if (!backwards) {
      onChange({ range: CUSTOM_RANGE, since, until });
    }
  }

  for (const [key, name] of Object.entries(SERVER_TEXT)) {
    bindText(key, name, 'change');
  }
  for (const [key, name] of Object.entries(PAGE_TEXT)) {
    bindText(key, name, 'input');
  }
  elements.status.addEventListener('change', () => onChange({ status: elements.status.value }));
  elements.range.addEventListener('change', () => {
    const range = elements.range.value;
    elements.customRange.hidden = range !== CUSTOM_RANGE;
    if (range === CUSTOM_RANGE) {
      commitCustomRange();
    } else {
      onChange({ range, since: '', until: '' });
    }
  });
  elements.since.addEventListener('change', commitCustomRange);
  elements.until.addEventListener('change', commitCustomRange);
  elements.clear.addEventListener('click', () => {
    onChange({
      model: '',
      model_group: '',
      status: '',
      error_code: '',
      key_alias: '',
      team: '',
      user: '',
      q: '',
      range: '',
      since: '',
      until: '',
    });
  });
  elements.order.addEventListener('click', () =>
    onChange({ order: order === ORDERS.tail ? ORDERS.newest : ORDERS.tail }),
  );
  elements.pause.addEventListener('click', () => onChange({ paused: !paused }));
  elements.maxRows.addEventListener('change', () => {
    const value = Number(elements.maxRows.value);
    if (Number.isInteger(value) && value >= MIN_MAX_ROWS && value <= MAX_MAX_ROWS) {
      onChange({ maxRows: value });
    }
  });
  // Enter in a field commits it through its change event; the form itself goes nowhere.
  elements.form.addEventListener('submit', (event) => event.preventDefault());

  return {
    showState,
    setExportLinks,
    suggestFrom,
    focusSearch: () => {
      elements.q.focus();
      elements.q.select();
    },
    get searchInput() {
      return elements.q;
    },
  };
}
