// Updates the status area and the row counts: connection state with a reconnect
// countdown, stream source, backfill progress, the upstream error banner, and the
// notes on dropped, held and filtered rows.

import { formatCount, formatLocalTime, formatRowCount } from './format.js';

const SELECTORS = {
  status: '#status',
  state: '#connection-state',
  stateHint: '#state-hint',
  countdown: '#retry-countdown',
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
  heldNote: '#held-note',
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

const COUNTDOWN_TICK_MS = 250;

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
    parts.push(`backfill ${formatCount(meta.limit)}`);
  }
  return parts.filter(Boolean).join(' · ');
}

/** Describes an upstream_error event's kind, status and retry plan in one line. */
export function describeUpstreamError(error) {
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

const RECONNECT_REASONS = {
  dropped: 'The connection dropped.',
  refused: 'The server did not accept the stream.',
  heartbeat: 'The stream went silent for three ping intervals.',
  lagged: 'The server dropped rows because the page read too slowly.',
};

/**
 * Finds the status elements under `root` and returns functions that update them.
 * Throws when the page lacks one of them.
 */
export function createStatusView(root = document, { now = () => Date.now() } = {}) {
  const elements = findElements(root);
  let countdownTimer = null;

  function stopCountdown() {
    if (countdownTimer !== null) {
      window.clearInterval(countdownTimer);
      countdownTimer = null;
    }
    elements.countdown.textContent = '';
  }

  // The countdown has aria-live="off" in the page, so screen readers announce the
  // state change once and not every second.
  function showCountdown(retryAt) {
    const update = () => {
      const seconds = Math.max(0, Math.ceil((retryAt - now()) / 1000));
      elements.countdown.textContent = seconds > 0 ? `retrying in ${seconds} s` : 'retrying now';
    };
    update();
    countdownTimer = window.setInterval(update, COUNTDOWN_TICK_MS);
  }

  /**
   * Shows a connection state. For "reconnecting", `retryAt` (epoch ms) starts a
   * countdown; `hint` replaces the default explanation.
   */
  function setState(state, { hint = '', reason = '', retryAt = null } = {}) {
    stopCountdown();
    elements.status.dataset.state = state;
    elements.state.textContent = STATE_LABELS[state];
    elements.stateHint.textContent = hint || (RECONNECT_REASONS[reason] ?? '');
    if (state === 'reconnecting' && retryAt !== null) {
      showCountdown(retryAt);
    }
    elements.reconnect.hidden = state !== 'reconnecting' && state !== 'disconnected';
  }

  /** Replaces the explanation next to the state label, keeping the state and countdown. */
  function showHint(text) {
    elements.stateHint.textContent = text;
  }

  function showSource(meta) {
    elements.source.textContent = describeSource(meta);
  }

  // A null total means the server does not know the row count yet, so the bar
  // stays indeterminate.
  function showProgress(loaded, total) {
    const bar = elements.backfillBar;
    if (Number.isInteger(total) && total > 0) {
      bar.max = total;
      bar.value = Math.min(loaded, total);
      elements.backfillText.textContent = `loaded ${formatCount(loaded)} of ${formatCount(total)}`;
    } else {
      bar.removeAttribute('value');
      elements.backfillText.textContent = `loaded ${formatCount(loaded)}`;
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

  function isUpstreamErrorShown() {
    return !elements.upstreamError.hidden;
  }

  function showRowSummary({ rowCount, viewCount, droppedCount, heldCount, maxRows, filtered }) {
    elements.rowCount.textContent = filtered
      ? `${formatCount(viewCount)} of ${formatRowCount(rowCount)}`
      : formatRowCount(rowCount);
    const kept = formatCount(maxRows);
    elements.droppedNote.textContent = `${formatCount(droppedCount)} older rows dropped (keeping ${kept})`;
    elements.droppedNote.hidden = droppedCount === 0;
    elements.heldNote.textContent = `paused: ${formatCount(heldCount)} new rows waiting`;
    elements.heldNote.hidden = heldCount === 0;
  }

  function showEmptyNote(visible) {
    elements.emptyNote.hidden = !visible;
  }

  function onReconnectClick(listener) {
    elements.reconnect.addEventListener('click', listener);
  }

  return {
    setState,
    showHint,
    showSource,
    showProgress,
    hideProgress,
    showUpstreamError,
    hideUpstreamError,
    isUpstreamErrorShown,
    showRowSummary,
    showEmptyNote,
    onReconnectClick,
  };
}
