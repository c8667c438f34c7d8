// Builds table rows and fills them with one spend log entry. Rows are reused as the
// table scrolls, so a row is created once with its cells and later only refilled.
// Every value goes through textContent or the title property, never through HTML
// parsing, because model names and error messages come from upstream and may contain
// markup.

import { formatCost, formatCount, formatDuration, formatLocalTime, formatUtcTime } from './format.js';
import { isConnectionError, isRateLimited } from './stats.js';

const STATUS_CLASSES = new Map([
  ['success', 'status-success'],
  ['failure', 'status-failure'],
]);
const UNKNOWN_STATUS_CLASS = 'status-other';

/** Class of the <tr> elements that show an entry (the others are spacers). */
export const DATA_ROW_CLASS = 'data-row';

function toText(value) {
  return value === null || value === undefined ? '' : String(value);
}

function joinPresent(parts, separator) {
  return parts.filter((part) => part !== '').join(separator);
}

function createCell(className) {
  const cell = document.createElement('td');
  cell.className = className;
  return cell;
}

function createSpan(className) {
  const span = document.createElement('span');
  span.className = className;
  return span;
}

function setText(element, text, title = '') {
  if (element.textContent !== text) {
    element.textContent = text;
  }
  if (title) {
    element.title = title;
  } else if (element.hasAttribute('title')) {
    element.removeAttribute('title');
  }
}

/**
 * Creates an empty <tr> with the cells of the table header: time, model, status,
 * tokens, spend, duration, key/team/user and error.
 */
export function createRowElement() {
  const row = document.createElement('tr');
  row.className = DATA_ROW_CLASS;
  const model = createCell('col-model');
  model.append(createSpan('model-name'), createSpan('model-group'));
  const status = createCell('col-status');
  status.append(createSpan('status-badge'));
  row.append(
    createCell('col-time'),
    model,
    status,
    createCell('col-number col-tokens'),
    createCell('col-number col-spend'),
    createCell('col-number col-duration'),
    createCell('col-who'),
    createCell('col-error'),
  );
  return row;
}

function fillTime(cell, entry) {
  const requestId = toText(entry.request_id);
  setText(
    cell,
    formatLocalTime(entry.start_time),
    joinPresent([formatUtcTime(entry.start_time), requestId && `request ${requestId}`], '\n'),
  );
}

function fillModel(cell, entry) {
  const model = toText(entry.model);
  const group = toText(entry.model_group);
  const provider = toText(entry.provider);
  const [nameSpan, groupSpan] = cell.children;
  setText(nameSpan, model);
  setText(groupSpan, group && group !== model ? group : '');
  cell.title = joinPresent([model, group && `group: ${group}`, provider && `provider: ${provider}`], '\n');
}

function fillStatus(cell, entry) {
  const status = toText(entry.status);
  const badge = cell.firstElementChild;
  setText(badge, status);
  badge.className = `status-badge ${STATUS_CLASSES.get(status) ?? UNKNOWN_STATUS_CLASS}`;
  cell.title = entry.cache_hit === true ? 'cache hit' : '';
}

function fillWho(cell, entry) {
  const parts = [toText(entry.key_alias), toText(entry.team_id), toText(entry.user)];
  const labels = ['key', 'team', 'user'];
  const title = parts
    .map((part, index) => (part ? `${labels[index]}: ${part}` : ''))
    .filter(Boolean)
    .join('\n');
  setText(cell, joinPresent(parts, ' · '), title);
}

function rowClassName(entry) {
  const classes = [DATA_ROW_CLASS];
  if (entry.status === 'failure') {
    classes.push('row-failure');
  }
  if (isRateLimited(entry)) {
    classes.push('row-rate-limit');
  } else if (isConnectionError(entry)) {
    classes.push('row-connection');
  }
  return classes.join(' ');
}

/** Fills a row made by createRowElement with a lite entry. */
export function fillRow(row, entry) {
  row.dataset.requestId = toText(entry.request_id);
  row.className = rowClassName(entry);
  const cells = row.children;
  fillTime(cells[0], entry);
  fillModel(cells[1], entry);
  fillStatus(cells[2], entry);
  const prompt = formatCount(entry.prompt_tokens);
  const completion = formatCount(entry.completion_tokens);
  setText(
    cells[3],
    formatCount(entry.total_tokens),
    joinPresent([prompt && `prompt ${prompt}`, completion && `completion ${completion}`], '\n'),
  );
  setText(cells[4], formatCost(entry.spend), entry.cache_hit === true ? 'cache hit' : '');
  setText(cells[5], formatDuration(entry.duration_ms));
  fillWho(cells[6], entry);
  setText(
    cells[7],
    joinPresent([toText(entry.error_code), toText(entry.error_class)], ' '),
    toText(entry.error_message),
  );
}
