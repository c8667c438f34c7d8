// Turns the stream's events into row store updates and connection states.
//
// Rows between `meta` and `done` are backfill: newest first, older than every row held.
// Rows after `done` are live: oldest first within an event, newer than every row held.
// A resumed stream sends `meta` again and then possibly more backfill or live rows, so
// a second `meta` keeps the rows; only `reset` clears them. The store drops a row whose
// request_id it already holds, as a safety net against a row sent twice.

/** Names of the server's events. */
export const EVENTS = Object.freeze({
  meta: 'meta',
  reset: 'reset',
  entries: 'entries',
  progress: 'progress',
  done: 'done',
  ping: 'ping',
  upstreamError: 'upstream_error',
  upstreamOk: 'upstream_ok',
  lagged: 'lagged',
  shutdown: 'shutdown',
});

// Hint shown for each reason given to connection.stop().
const STOP_HINTS = {
  offline: 'The browser is offline.',
  'signed-out': 'The session has ended. Reload the page to sign in again.',
  default: 'The page closed the stream.',
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

/**
 * Creates the stream event handlers and the connection status handler.
 *
 * `onRows(entries)` runs after rows were stored, `onReset()` after a reset cleared
 * them, and `onLagged(cursor)` when the server dropped rows for this page and the
 * stream should be reopened after `cursor`.
 */
export function createStreamHandlers({ store, status, onRows, onReset, onLagged }) {
  let connected = false;
  let backfillDone = false;
  // Backfill rows of the current connection, and the total of its last meta or
  // progress event. Progress events only come at upstream page ends, so the rows are
  // counted here to show progress while a large page is still arriving.
  let backfillLoaded = 0;
  let backfillTotal = null;

  function streamState() {
    if (status.isUpstreamErrorShown()) {
      return 'upstreamError';
    }
    return backfillDone ? 'live' : 'backfilling';
  }

  function clearUpstreamError() {
    if (status.isUpstreamErrorShown()) {
      status.hideUpstreamError();
      status.setState(streamState());
    }
  }

  function handleMeta(meta) {
    connected = true;
    backfillDone = false;
    backfillLoaded = 0;
    backfillTotal = meta.total;
    status.hideUpstreamError();
    status.showSource(meta);
    status.showProgress(backfillLoaded, backfillTotal);
    status.setState('backfilling');
  }

  function handleReset(data) {
    console.info(`The stream restarts from scratch: ${data.reason ?? 'no reason given'}.`);
    store.clear();
    onReset();
  }

  function handleEntries(entries) {
    if (!Array.isArray(entries)) {
      console.warn('Ignored an "entries" event: its data is not a JSON array.', entries);
      return;
    }
    const rows = entries.filter((entry) => isPlainObject(entry) && typeof entry.request_id === 'string');
    if (rows.length < entries.length) {
      console.warn(`Ignored ${entries.length - rows.length} entries that are not rows with a request_id.`);
    }
    // Rows arriving after an upstream error show that LiteLLM answers again.
    clearUpstreamError();
    if (backfillDone) {
      store.addLive(rows);
    } else {
      store.addBackfill(rows);
      backfillLoaded += rows.length;
      status.showProgress(backfillLoaded, backfillTotal);
    }
    onRows(rows);
  }

  function handleProgress(progress) {
    if (!backfillDone) {
      backfillTotal = progress.total;
      if (!status.isUpstreamErrorShown()) {
        status.showProgress(backfillLoaded, backfillTotal);
      }
    }
  }

  function handleDone() {
    backfillDone = true;
    status.hideProgress();
    status.hideUpstreamError();
    status.setState('live');
    onRows([]);
  }

  function handleUpstreamError(error) {
    // A running progress bar would claim that the backfill goes on.
    status.hideProgress();
    status.showUpstreamError(error);
    status.setState('upstreamError');
  }

  function handleUpstreamOk() {
    clearUpstreamError();
  }

  function handleLagged(data) {
    console.warn(`The server dropped ${data.skipped} rows for this page; resuming after ${data.cursor}.`);
    onLagged(typeof data.cursor === 'string' ? data.cursor : '');
  }

  function handleShutdown() {
    status.setState('reconnecting', { hint: 'The server is shutting down.' });
  }

  /** Maps the connection's phases (connection.js) to the states in the status area. */
  function onConnectionStatus({ phase, reason, retryAt }) {
    if (phase === 'connecting') {
      status.setState(
        connected ? 'reconnecting' : 'connecting',
        connected ? { hint: 'Connecting again…' } : {},
      );
    } else if (phase === 'waiting') {
      status.hideProgress();
      status.setState('reconnecting', { reason, retryAt });
    } else if (phase === 'stopped') {
      status.setState('disconnected', { hint: STOP_HINTS[reason] ?? STOP_HINTS.default });
    }
  }

  return {
    handlers: {
      [EVENTS.meta]: acceptObjectsOnly(EVENTS.meta, handleMeta),
      [EVENTS.reset]: acceptObjectsOnly(EVENTS.reset, handleReset),
      [EVENTS.entries]: handleEntries,
      [EVENTS.progress]: acceptObjectsOnly(EVENTS.progress, handleProgress),
      [EVENTS.done]: acceptObjectsOnly(EVENTS.done, handleDone),
      [EVENTS.upstreamError]: acceptObjectsOnly(EVENTS.upstreamError, handleUpstreamError),
      [EVENTS.upstreamOk]: acceptObjectsOnly(EVENTS.upstreamOk, handleUpstreamOk),
      [EVENTS.lagged]: acceptObjectsOnly(EVENTS.lagged, handleLagged),
      [EVENTS.shutdown]: acceptObjectsOnly(EVENTS.shutdown, handleShutdown),
    },
    onConnectionStatus,
    /** Forgets the stream position, for a new query. */
    forget() {
      connected = false;
      backfillDone = false;
      backfillLoaded = 0;
      backfillTotal = null;
      status.hideUpstreamError();
    },
    get backfillDone() {
      return backfillDone;
    },
  };
}
