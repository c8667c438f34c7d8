// Wires the viewer page: opens one spend stream per tab, routes its events to the
// row table and the status area, and closes the stream when the page is hidden.

import { buildStreamUrl, openStream, READY_STATE } from './source.js';
import { renderRow } from './render.js';
import { createRowTable } from './table.js';
import { createStatusView } from './status.js';

// Rows kept in the table. Older rows are dropped and counted.
const MAX_ROWS = 5000;
const ROWS_SELECTOR = '#spend-rows';

const EVENTS = {
  meta: 'meta',
  entries: 'entries',
  progress: 'progress',
  upstreamError: 'upstream_error',
  done: 'done',
};

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// Wraps a handler so that events whose data is not a JSON object are logged and skipped.
function acceptObjectsOnly(eventName, handler) {
  return (data) => {
    if (!isPlainObject(data)) {
      console.warn(`Ignored a "${eventName}" event: its data is not a JSON object.`, data);
      return;
    }
    handler(data);
  };
}

function startViewer() {
  const status = createStatusView(document);
  const table = createRowTable(document.querySelector(ROWS_SELECTOR), {
    maxRows: MAX_ROWS,
    renderRow,
    onFlush: (summary) => {
      status.showRowSummary(summary);
      updateEmptyNote();
    },
  });

  let stream = null;
  let receivedMeta = false;
  let backfillDone = false;
  // Backfill rows received so far, and the total of the last meta or progress event.
  // Progress events only come at upstream page ends, so the count is kept here to show
  // progress while a large page is still arriving.
  let backfillReceived = 0;
  let backfillTotal = null;

  function updateEmptyNote() {
    status.showEmptyNote(backfillDone && table.rowCount + table.pendingCount === 0);
  }

  function handleMeta(meta) {
    // NOTE: this assumes that the server sends the whole backfill again after a
    // reconnect, so the rows of the previous connection are cleared. Revisit this
    // if the server starts to resume from Last-Event-ID.
    if (receivedMeta) {
      table.clear();
    }
    receivedMeta = true;
    backfillDone = false;
    backfillReceived = 0;
    backfillTotal = meta.total;
    updateEmptyNote();
    status.hideUpstreamError();
    status.showSource(meta);
    status.showProgress(backfillReceived, backfillTotal);
    status.setState('backfilling');
  }

  function handleEntries(entries) {
    if (!Array.isArray(entries)) {
      console.warn('Ignored an "entries" event: its data is not a JSON array.', entries);
      return;
    }
    const rows = entries.filter(isPlainObject);
    if (rows.length < entries.length) {
      console.warn(`Ignored ${entries.length - rows.length} entries that are not JSON objects.`);
    }
    table.queueEntries(rows, { live: backfillDone });
    if (!backfillDone) {
      backfillReceived += rows.length;
      status.showProgress(backfillReceived, backfillTotal);
    }
  }

  function handleProgress(progress) {
    if (!backfillDone) {
      backfillTotal = progress.total;
      status.showProgress(progress.sent, backfillTotal);
    }
  }

  function handleUpstreamError(error) {
    // The backfill stopped, so a running progress bar would claim that it goes on.
    status.hideProgress();
    status.showUpstreamError(error);
    status.setState('upstreamError');
  }

  function handleDone() {
    backfillDone = true;
    status.hideProgress();
    status.setState('live');
    updateEmptyNote();
  }

  function handleConnectionError(readyState) {
    status.setState(readyState === READY_STATE.CLOSED ? 'disconnected' : 'reconnecting');
  }

  function connect() {
    stream?.close();
    status.setState('connecting');
    stream = openStream(buildStreamUrl(window.location.search), {
      handlers: {
        [EVENTS.meta]: acceptObjectsOnly(EVENTS.meta, handleMeta),
        [EVENTS.entries]: handleEntries,
        [EVENTS.progress]: acceptObjectsOnly(EVENTS.progress, handleProgress),
        [EVENTS.upstreamError]: acceptObjectsOnly(EVENTS.upstreamError, handleUpstreamError),
        [EVENTS.done]: acceptObjectsOnly(EVENTS.done, handleDone),
      },
      onConnectionError: handleConnectionError,
    });
  }

  function disconnect() {
    stream?.close();
    stream = null;
  }

  status.onReconnectClick(connect);
  window.addEventListener('pagehide', disconnect);
  // A page restored from the back/forward cache had its stream closed on pagehide.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) {
      connect();
    }
  });
  connect();
}

startViewer();
