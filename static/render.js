// Turns one spend log entry into a table row. Every value goes through textContent
// or the title property, never through HTML parsing, because model names and error
// messages come from upstream and may contain markup.

import { formatCost, formatCount, formatDuration, formatLocalTime } from './format.js';

const STATUS_CLASSES = new Map([
  ['success', 'status-success'],
  ['failure', 'status-failure'],
]);
const UNKNOWN_STATUS_CLASS = 'status-other';
const FAILURE_ROW_CLASS = 'row-failure';

function toText(value) {
  return value === null || value === undefined ? '' : String(value);
}

function joinPresent(parts, separator) {
  return parts.filter((part) => part !== '').join(separator);
}

function createCell({ text = '', title = '', className = '' } = {}) {
  const cell = document.createElement('td');
  cell.textContent = text;
  if (title) {
    cell.title = title;
  }
  if (className) {
    cell.className = className;
  }
  return cell;
}

function createSpan(text, className) {
  const span = document.createElement('span');
  span.className = className;
  span.textContent = text;
  return span;
}

function renderTimeCell(entry) {
  const isoTime = toText(entry.start_time);
  const requestId = toText(entry.request_id);
  return createCell({
    text: formatLocalTime(entry.start_time),
    title: joinPresent([isoTime, requestId && `request ${requestId}`], '\n'),
    className: 'col-time',
  });
}

function renderModelCell(entry) {
  const model = toText(entry.model);
  const modelGroup = toText(entry.model_group);
  const provider = toText(entry.provider);

  const cell = createCell({
    title: joinPresent([modelGroup && `group: ${modelGroup}`, provider && `provider: ${provider}`], '\n'),
    className: 'col-model',
  });
  cell.append(createSpan(model, 'model-name'));
  if (modelGroup && modelGroup !== model) {
    cell.append(createSpan(modelGroup, 'model-group'));
  }
  return cell;
}

function renderStatusCell(entry) {
  const status = toText(entry.status);
  const cell = createCell({
    title: entry.cache_hit === true ? 'cache hit' : '',
    className: 'col-status',
  });
  cell.append(createSpan(status, `status-badge ${STATUS_CLASSES.get(status) ?? UNKNOWN_STATUS_CLASS}`));
  return cell;
}

function renderTokensCell(entry) {
  const prompt = formatCount(entry.prompt_tokens);
  const completion = formatCount(entry.completion_tokens);
  return createCell({
    text: formatCount(entry.total_tokens),
    title: joinPresent([prompt && `prompt ${prompt}`, completion && `completion ${completion}`], '\n'),
    className: 'col-number col-tokens',
  });
}

function renderSpendCell(entry) {
  return createCell({
    text: formatCost(entry.spend),
    title: entry.cache_hit === true ? 'cache hit' : '',
    className: 'col-number col-spend',
  });
}

function renderDurationCell(entry) {
  return createCell({
    text: formatDuration(entry.duration_ms),
    className: 'col-number col-duration',
  });
}

function renderErrorCell(entry) {
  return createCell({
    text: joinPresent([toText(entry.error_code), toText(entry.error_class)], ' '),
    title: toText(entry.error_message),
    className: 'col-error',
  });
}

/**
 * Creates the <tr> for one lite spend log entry, with cells in the order of the
 * table header: time, model, status, tokens, spend, duration and error. The row
 * carries the entry's request id in its data-request-id attribute.
 */
export function renderRow(entry) {
  const row = document.createElement('tr');
  row.dataset.requestId = toText(entry.request_id);
  if (entry.status === 'failure') {
    row.className = FAILURE_ROW_CLASS;
  }
  row.append(
    renderTimeCell(entry),
    renderModelCell(entry),
    renderStatusCell(entry),
    renderTokensCell(entry),
    renderSpendCell(entry),
    renderDurationCell(entry),
    renderErrorCell(entry),
  );
  return row;
}
