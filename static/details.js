// The row detail panel. Opening it for a row fetches the full row once from
// /api/spend/logs/{request_id} and shows it as sections: timing, tokens and cost, key/
// team/user, the error with its traceback, request and response, and metadata.

import { formatCost, formatCount, formatDuration, formatLocalTime, formatUtcTime } from './format.js';
import { readErrorMessage } from './http.js';
import { renderJsonNode } from './jsontree.js';

const ENTRY_PATH = '/api/spend/logs/';
const COPY_FEEDBACK_MS = 1500;

const SELECTORS = {
  panel: '#details',
  title: '#details-title',
  subtitle: '#details-subtitle',
  body: '#details-body',
  close: '#details-close',
  copyId: '#details-copy-id',
  copyJson: '#details-copy-json',
};

function createElement(tag, className, text) {
  const element = document.createElement(tag);
  if (className) {
    element.className = className;
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

function isPresent(value) {
  return value !== null && value !== undefined && value !== '';
}

function asObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

/** Copies text to the clipboard and shows the outcome on the button for a moment. */
export async function copyText(button, text) {
  const label = button.dataset.label ?? button.textContent;
  button.dataset.label = label;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch (error) {
    console.warn('Copying to the clipboard failed.', error);
    button.textContent = 'Copy failed';
  }
  window.setTimeout(() => {
    button.textContent = label;
  }, COPY_FEEDBACK_MS);
}

function copyButton(label, getText) {
  const button = createElement('button', 'button copy-button', label);
  button.type = 'button';
  button.addEventListener('click', () => copyText(button, getText()));
  return button;
}

function section(title, ...children) {
  const element = createElement('section', 'details-section');
  element.append(createElement('h3', '', title), ...children);
  return element;
}

// A definition list of [label, value] pairs; pairs without a value are left out.
function fieldList(pairs) {
  const list = createElement('dl', 'details-fields');
  for (const [label, value, title] of pairs) {
    if (!isPresent(value)) {
      continue;
    }
    const term = createElement('dt', '', label);
    const description = createElement('dd', '', String(value));
    if (title) {
      description.title = title;
    }
    list.append(term, description);
  }
  return list;
}

function millisecondsBetween(start, end) {
  const from = new Date(start).getTime();
  const to = new Date(end).getTime();
  return Number.isFinite(from) && Number.isFinite(to) ? to - from : null;
}

function timingSection(row, lite) {
  const firstToken = millisecondsBetween(row.startTime, row.completionStartTime);
  const total = millisecondsBetween(row.startTime, row.endTime);
  // LiteLLM sets completionStartTime to endTime for requests that were not streamed.
  const streamed = firstToken !== null && total !== null && firstToken < total;
  const metadata = asObject(row.metadata);
  return section(
    'Timing',
    fieldList([
      ['Start', formatLocalTime(lite.start_time), formatUtcTime(lite.start_time)],
      ['Start (UTC)', formatUtcTime(lite.start_time)],
      ['End', row.endTime ? formatLocalTime(row.endTime) : '', formatUtcTime(row.endTime)],
      ['Duration', formatDuration(lite.duration_ms)],
      ['First token', streamed ? formatDuration(firstToken) : ''],
      ['LiteLLM overhead', formatDuration(metadata.litellm_overhead_time_ms)],
      ['Call type', row.call_type],
    ]),
  );
}

// Cost lines from LiteLLM's cost_breakdown, or estimated from the model's price per
// token when the row has no breakdown.
function costLines(row, lite) {
  const metadata = asObject(row.metadata);
  const breakdown = asObject(metadata.cost_breakdown);
  if (Object.keys(breakdown).length > 0) {
    return [
      ['Input cost', formatCost(breakdown.input_cost)],
      ['Output cost', formatCost(breakdown.output_cost)],
      ['Tool cost', breakdown.tool_usage_cost ? formatCost(breakdown.tool_usage_cost) : ''],
      ['Discount', breakdown.discount_amount ? formatCost(-breakdown.discount_amount) : ''],
      ['Margin', breakdown.margin_total_amount ? formatCost(breakdown.margin_total_amount) : ''],
    ];
  }
  const price = asObject(asObject(metadata.model_map_information).model_map_value);
  const lines = [];
  if (typeof price.input_cost_per_token === 'number') {
    lines.push(['Input cost (estimate)', formatCost(lite.prompt_tokens * price.input_cost_per_token)]);
  }
  if (typeof price.output_cost_per_token === 'number') {
    lines.push(['Output cost (estimate)', formatCost(lite.completion_tokens * price.output_cost_per_token)]);
  }
  return lines;
}

function costSection(row, lite) {
  let cacheHit = '';
  if (typeof lite.cache_hit === 'boolean') {
    cacheHit = lite.cache_hit ? 'yes' : 'no';
  }
  return section(
    'Tokens and cost',
    fieldList([
      ['Prompt tokens', formatCount(lite.prompt_tokens)],
      ['Completion tokens', formatCount(lite.completion_tokens)],
      ['Total tokens', formatCount(lite.total_tokens)],
      ['Spend', formatCost(lite.spend), String(lite.spend)],
      ...costLines(row, lite),
      ['Cache hit', cacheHit],
    ]),
  );
}

function identitySection(row, lite) {
  const metadata = asObject(row.metadata);
  const tags = Array.isArray(row.request_tags) ? row.request_tags.join(', ') : '';
  return section(
    'Key, team and user',
    fieldList([
      ['Key alias', lite.key_alias],
      ['Key hash', row.api_key],
      ['Team', lite.team_id],
      ['Team alias', metadata.user_api_key_team_alias],
      ['User', lite.user],
      ['End user', lite.end_user],
      ['Session', lite.session_id],
      ['Client IP', row.requester_ip_address],
      ['Tags', tags],
    ]),
  );
}

function errorSection(row, lite) {
  const error = asObject(asObject(row.metadata).error_information);
  const traceback = typeof error.traceback === 'string' ? error.traceback : '';
  const message = isPresent(error.error_message) ? String(error.error_message) : lite.error_message;
  const children = [
    fieldList([
      ['Code', lite.error_code],
      ['Class', lite.error_class],
      ['Provider', error.llm_provider],
    ]),
  ];
  if (isPresent(message)) {
    children.push(createElement('p', 'details-error-message', message));
  }
  if (traceback) {
    const heading = createElement('div', 'details-subheading');
    heading.append(
      createElement('span', '', 'Traceback'),
      copyButton('Copy traceback', () => traceback),
    );
    children.push(heading, createElement('pre', 'details-traceback', traceback));
  }
  return section('Error', ...children);
}

function jsonSection(title, pairs) {
  const present = pairs.filter(([, value]) => value !== null && value !== undefined);
  if (present.length === 0) {
    return null;
  }
  const tree = createElement('div', 'json-tree');
  for (const [label, value] of present) {
    tree.append(renderJsonNode(value, label));
  }
  return section(title, tree);
}

function truncatedNote(row) {
  const truncated = asObject(row.truncated);
  const paths = Object.keys(truncated);
  if (paths.length === 0) {
    return null;
  }
  const list = paths.map((path) => `${path} (${formatCount(truncated[path])} characters)`).join(', ');
  return createElement('p', 'details-note', `Cut to 64 KB for display: ${list}.`);
}

/** Builds the sections for a full row as returned by /api/spend/logs/{request_id}. */
export function renderDetailSections(row) {
  const lite = { ...asObject(row.lite) };
  const sections = [timingSection(row, lite), costSection(row, lite), identitySection(row, lite)];
  if (lite.status === 'failure' || isPresent(lite.error_code)) {
    sections.push(errorSection(row, lite));
  }
  sections.push(
    jsonSection('Request and response', [
      ['proxy_server_request', row.proxy_server_request],
      ['messages', row.messages],
      ['response', row.response],
    ]),
    jsonSection('Metadata', [['metadata', row.metadata]]),
    truncatedNote(row),
  );
  return sections.filter((element) => element !== null);
}

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

/**
 * Creates the panel. `fetchRow(requestId, signal)` returns a fetch Response; `onClose()`
 * runs after the panel was closed, to put the focus back on the table.
 */
export function createDetailPanel(root = document, { fetchRow = defaultFetchRow, onClose = () => {} } = {}) {
  const elements = findElements(root);
  let controller = null;
  let current = null;
  let fullRow = null;

  function showMessage(text, className) {
    elements.body.replaceChildren(createElement('p', className, text));
  }

  async function load(requestId, signal) {
    try {
      const response = await fetchRow(requestId, signal);
      if (!response.ok) {
        const message = await readErrorMessage(response);
        if (!signal.aborted) {
          showMessage(message, 'details-error');
        }
        return;
      }
      const row = await response.json();
      if (signal.aborted) {
        return;
      }
      fullRow = row;
      elements.body.replaceChildren(...renderDetailSections(row));
    } catch (error) {
      if (error.name !== 'AbortError') {
        showMessage(`Loading the row failed: ${error.message}`, 'details-error');
      }
    }
  }

  /** Shows the panel for a row record and fetches its full row (one request per call). */
  function open(record) {
    controller?.abort();
    controller = new AbortController();
    current = record;
    fullRow = null;
    const entry = record.entry;
    elements.title.textContent = entry.model || entry.model_group || 'Spend log';
    elements.subtitle.textContent = entry.request_id;
    elements.panel.dataset.requestId = entry.request_id;
    elements.panel.dataset.status = entry.status ?? '';
    elements.panel.hidden = false;
    showMessage('Loading…', 'details-loading');
    load(entry.request_id, controller.signal);
  }

  /** Hides the panel; `returnFocus` false keeps the focus where it is (say, in a filter). */
  function close({ returnFocus = true } = {}) {
    if (elements.panel.hidden) {
      return;
    }
    controller?.abort();
    controller = null;
    current = null;
    fullRow = null;
    elements.panel.hidden = true;
    delete elements.panel.dataset.requestId;
    if (returnFocus) {
      onClose();
    }
  }

  elements.close.addEventListener('click', () => close());
  elements.copyId.addEventListener('click', () => copyText(elements.copyId, current?.entry.request_id ?? ''));
  elements.copyJson.addEventListener('click', () =>
    copyText(elements.copyJson, JSON.stringify(fullRow ?? current?.entry ?? {}, null, 2)),
  );

  return {
    open,
    close,
    get isOpen() {
      return !elements.panel.hidden;
    },
    get current() {
      return current;
    },
  };
}

function defaultFetchRow(requestId, signal) {
  return fetch(`${ENTRY_PATH}${encodeURIComponent(requestId)}`, {
    signal,
    headers: { Accept: 'application/json' },
  });
}
