// Updates the status area and the table summary: connection state, stream source,
// backfill progress, the upstream error banner and row counts.

import { formatCount, formatLocalTime } from './format.js';

const SELECTORS = {
  status: '#status',
  state: '#connection-state',
  stateHint: '#state-hint',
  source: '#stream-source',
  reconnect: '#reconnect',
  backfill: '#backfill',
  backfillBar: '#backfill-bar',
  backfillText: '#backfill-text',
  upstreamError: '#upstream-error',
  upstreamErrorMessage: '#upstream-error-message',
  upstreamErrorDetail: '#upstream-error-detail',
  rowCount: '#row-count',
  droppedNote: '#dropped-note',
  emptyNote: '#empty-note',
};

/** Label of each connection state. The key is also the status area's data-state. */
export const STATE_LABELS = Object.freeze({
  connecting: 'Connecting…',
  backfilling: 'Loading history…',
  live: 'Live',
  upstreamError: 'Upstream error',
  reconnecting: 'Reconnecting…',
  disconnected: 'Disconnected',
});

// Extra text for states whose label alone does not say what happens next.
const STATE_HINTS = Object.freeze({
  reconnecting: 'The connection dropped. The browser retries on its own.',
  disconnected: 'The server refused or closed the stream, so the browser stopped retrying.',
});

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

function describeWindow(timeWindow) {
  const since = timeWindow?.since ? `since ${formatLocalTime(timeWindow.since)}` : '';
  const until = timeWindow?.until ? `until ${formatLocalTime(timeWindow.until)}` : '';
  return [since, until].filter(Boolean).join(' ');
}

function describeSource(meta) {
  const parts = [meta.source, meta.origin];
  if (meta.endpoint) {
    parts.push(`endpoint ${meta.endpoint}`);
  }
  parts.push(describeWindow(meta.window));
  if (meta.full) {
    parts.push('full history');
  } else if (Number.isInteger(meta.limit)) {
    parts.push(`limit ${formatCount(meta.limit)}`);
  }
  return parts.filter(Boolean).join(' · ');
}

function describeUpstreamError(error) {
  const parts = [];
  if (error.kind) {
    parts.push(`kind: ${error.kind}`);
  }
  if (Number.isInteger(error.status)) {
    parts.push(`HTTP ${error.status}`);
  }
  if (error.retry && Number.isFinite(error.retry_in)) {
    parts.push(`retrying in ${formatCount(error.retry_in)} s`);
  } else if (error.retry) {
    parts.push('retrying');
  } else {
    parts.push('not retrying');
  }
  return parts.join(' · ');
}

function describeRowCount(rowCount) {
  return rowCount === 1 ? '1 row' : `${formatCount(rowCount)} rows`;
}

/**
 * Finds the status elements under `root` and returns functions that update them.
 * Throws when the page lacks one of them.
 */
export function createStatusView(root = document) {
  const elements = findElements(root);

  function setState(state) {
    elements.status.dataset.state = state;
    elements.state.textContent = STATE_LABELS[state];
    elements.stateHint.textContent = STATE_HINTS[state] ?? '';
    elements.reconnect.hidden = state !== 'disconnected';
  }

  function showSource(meta) {
    elements.source.textContent = describeSource(meta);
  }

  // A null total means the server does not know the row count yet, so the bar
  // stays indeterminate.
  function showProgress(sent, total) {
    const bar = elements.backfillBar;
    if (Number.isInteger(total) && total > 0) {
      bar.max = total;
      bar.value = Math.min(sent, total);
      elements.backfillText.textContent = `loaded ${formatCount(sent)} of ${formatCount(total)}`;
    } else {
      bar.removeAttribute('value');
      elements.backfillText.textContent = `loaded ${formatCount(sent)}`;
    }
    elements.backfill.hidden = false;
  }

  function hideProgress() {
    elements.backfill.hidden = true;
  }

  function showUpstreamError(error) {
    const message = error.message ? String(error.message) : 'The upstream server returned an error.';
    elements.upstreamErrorMessage.textContent = message;
    elements.upstreamErrorDetail.textContent = describeUpstreamError(error);
    elements.upstreamError.hidden = false;
  }

  function hideUpstreamError() {
    elements.upstreamError.hidden = true;
  }

  function showRowSummary({ rowCount, droppedCount }) {
    elements.rowCount.textContent = describeRowCount(rowCount);
    elements.droppedNote.textContent = `older rows dropped: ${formatCount(droppedCount)}`;
    elements.droppedNote.hidden = droppedCount === 0;
  }

  function showEmptyNote(visible) {
    elements.emptyNote.hidden = !visible;
  }

  function onReconnectClick(listener) {
    elements.reconnect.addEventListener('click', listener);
  }

  return {
    setState,
    showSource,
    showProgress,
    hideProgress,
    showUpstreamError,
    hideUpstreamError,
    showRowSummary,
    showEmptyNote,
    onReconnectClick,
  };
}
