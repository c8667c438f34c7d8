// The summary strip: totals of the rows in view and a per-model table, drawn from a
// stats snapshot (stats.js). Rate limits (429) and connection errors get their own
// figures and a warning colour, because those are what operators look for first.

import { formatCost, formatCount, formatDuration, formatPercent } from './format.js';

const SELECTORS = {
  count: '#summary-count',
  spend: '#summary-spend',
  tokens: '#summary-tokens',
  errorRate: '#summary-error-rate',
  rateLimited: '#summary-rate-limited',
  connectionErrors: '#summary-connection-errors',
  models: '#model-rows',
};

// The per-model table shows the models with the most requests; the rest are counted.
export const MAX_MODEL_ROWS = 12;
const ALERT_CLASS = 'alert';

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

function setFigure(element, text, alert = false) {
  element.textContent = text;
  element.classList.toggle(ALERT_CLASS, alert);
}

function cell(text, className = '', alert = false) {
  const element = document.createElement('td');
  element.textContent = text;
  if (className) {
    element.className = className;
  }
  if (alert) {
    element.classList.add(ALERT_CLASS);
  }
  return element;
}

function modelRow(line) {
  const row = document.createElement('tr');
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = line.model;
  name.title = line.model;
  row.append(
    name,
    cell(formatCount(line.requests), 'col-number'),
    cell(formatCount(line.failures), 'col-number', line.failures > 0),
    cell(formatCount(line.rateLimited), 'col-number', line.rateLimited > 0),
    cell(formatCount(line.connectionErrors), 'col-number', line.connectionErrors > 0),
    cell(formatCost(line.spend), 'col-number'),
    cell(formatDuration(line.p50), 'col-number'),
    cell(formatDuration(line.p95), 'col-number'),
  );
  return row;
}

function moreRow(hidden) {
  const row = document.createElement('tr');
  const note = document.createElement('td');
  note.colSpan = 8;
  note.className = 'more-models';
  const requests = hidden.reduce((sum, line) => sum + line.requests, 0);
  note.textContent = `${formatCount(hidden.length)} more models with ${formatCount(requests)} requests`;
  row.append(note);
  return row;
}

/** Finds the summary elements under `root` and returns render(snapshot). */
export function createSummaryView(root = document) {
  const elements = findElements(root);

  function render(snapshot) {
    setFigure(elements.count, formatCount(snapshot.requests));
    setFigure(elements.spend, formatCost(snapshot.spend));
    setFigure(elements.tokens, formatCount(snapshot.tokens));
    setFigure(
      elements.errorRate,
      snapshot.errorRate === null ? '–' : formatPercent(snapshot.errorRate),
      snapshot.failures > 0,
    );
    setFigure(elements.rateLimited, formatCount(snapshot.rateLimited), snapshot.rateLimited > 0);
    setFigure(
      elements.connectionErrors,
      formatCount(snapshot.connectionErrors),
      snapshot.connectionErrors > 0,
    );

    const shown = snapshot.models.slice(0, MAX_MODEL_ROWS);
    const rows = shown.map(modelRow);
    if (snapshot.models.length > shown.length) {
      rows.push(moreRow(snapshot.models.slice(MAX_MODEL_ROWS)));
    }
    elements.models.replaceChildren(...rows);
  }

  return { render };
}
