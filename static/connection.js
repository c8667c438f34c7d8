// Keeps one stream open per page and rebuilds it when it drops.
//
// Choices:
// 1. On any EventSource error the page closes the EventSource and builds a new one
//    itself, after a capped exponential backoff with jitter, passing the last event id
//    as `?after=`. EventSource's own retry waits a fixed time with no jitter and does
//    not say when it will try, so every page behind a restarted server would come back
//    at the same moment and the status line could show no countdown.
// 2. A watchdog rebuilds the stream when it has been silent for three ping intervals.
//    The server sends a named `ping` event after each ping interval without other
//    events, so the page learns the interval from the silence before each ping.
// 3. At most one EventSource exists at a time: every open closes the previous one.

import { openStream, READY_STATE } from './source.js';

export const BACKOFF = Object.freeze({ baseMs: 1000, maxMs: 30_000 });
// The server's default ping_interval; replaced by the measured one after the first ping.
export const DEFAULT_PING_INTERVAL_MS = 15_000;
export const MISSED_PINGS = 3;
// Slack on top of the missed pings, for a ping that is a little late.
const WATCHDOG_GRACE_MS = 1000;
const WATCHDOG_TICK_MS = 1000;
const MIN_PING_INTERVAL_MS = 200;
const MAX_PING_INTERVAL_MS = 10 * 60 * 1000;

export const PING_EVENT = 'ping';
const META_EVENT = 'meta';

/**
 * Returns the wait in ms before reconnect attempt `attempt` (0 for the first). The
 * ceiling doubles from `baseMs` up to `maxMs`. The wait is drawn between half the
 * ceiling and the whole of it ("equal jitter"), so pages that dropped together spread out.
 */
export function backoffDelay(attempt, random = Math.random, { baseMs, maxMs } = BACKOFF) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

const browserTimers = {
  now: () => Date.now(),
  setTimeout: (callback, delay) => window.setTimeout(callback, delay),
  clearTimeout: (id) => window.clearTimeout(id),
  setInterval: (callback, delay) => window.setInterval(callback, delay),
  clearInterval: (id) => window.clearInterval(id),
};

/**
 * Creates a connection to the stream.
 *
 * `buildUrl(after)` returns the stream URL, with `after` the last event id or "".
 * `handlers` maps event names to functions of (data, event), as in openStream.
 * `onStatus(status)` gets { phase, reason, retryAt, attempt } with phase one of
 * "connecting", "open", "waiting" (a retry is scheduled at `retryAt`) and "stopped".
 * The reason of "waiting" is "dropped" (the stream ended after it had opened),
 * "refused" (it never opened) or "heartbeat" (it went silent).
 * `connect`, `timers` and `random` are replaceable for tests.
 */
export function createConnection({
  buildUrl,
  handlers = {},
  onStatus = () => {},
  connect,
  timers = browserTimers,
  random = Math.random,
}) {
  let stream = null;
  let lastEventId = '';
  let attempt = 0;
  let retryTimer = null;
  let watchdogTimer = null;
  let lastActivity = timers.now();
  let pingIntervalMs = DEFAULT_PING_INTERVAL_MS;
  let pingMeasured = false;
  let stopped = true;
  // Whether the current EventSource got its response headers (an "open" event).
  let opened = false;

  function deadlineMs() {
    return MISSED_PINGS * pingIntervalMs + WATCHDOG_GRACE_MS;
  }

  function noteEvent(name, event) {
    const now = timers.now();
    if (name === PING_EVENT) {
      const silence = now - lastActivity;
      pingIntervalMs = Math.min(MAX_PING_INTERVAL_MS, Math.max(MIN_PING_INTERVAL_MS, silence));
      pingMeasured = true;
    }
    lastActivity = now;
    if (event?.lastEventId) {
      lastEventId = event.lastEventId;
    }
    if (name === META_EVENT) {
      attempt = 0;
    }
  }

  function wrapHandlers() {
    const wrapped = {};
    const names = new Set([...Object.keys(handlers), PING_EVENT]);
    for (const name of names) {
      const handler = handlers[name] ?? (() => {});
      wrapped[name] = (data, event) => {
        noteEvent(name, event);
        handler(data, event);
      };
    }
    return wrapped;
  }

  function closeStream() {
    if (stream !== null) {
      stream.close();
      stream = null;
    }
  }

  function clearRetry() {
    if (retryTimer !== null) {
      timers.clearTimeout(retryTimer);
      retryTimer = null;
    }
  }

  function open() {
    clearRetry();
    closeStream();
    stopped = false;
    opened = false;
    lastActivity = timers.now();
    onStatus({ phase: 'connecting', reason: '', retryAt: null, attempt });
    stream = openStream(buildUrl(lastEventId), {
      handlers: wrapHandlers(),
      onOpen: () => {
        opened = true;
        lastActivity = timers.now();
        onStatus({ phase: 'open', reason: '', retryAt: null, attempt });
      },
      // Without an "open" event the server returned an error status or nothing at all.
      onConnectionError: () => scheduleRetry(opened ? 'dropped' : 'refused'),
      ...(connect ? { connect } : {}),
    });
    startWatchdog();
  }

  function scheduleRetry(reason) {
    closeStream();
    clearRetry();
    const delay = backoffDelay(attempt, random);
    attempt += 1;
    const retryAt = timers.now() + delay;
    retryTimer = timers.setTimeout(() => {
      retryTimer = null;
      open();
    }, delay);
    onStatus({ phase: 'waiting', reason, retryAt, attempt });
  }

  function checkHeartbeat() {
    if (stream === null) {
      return;
    }
    if (timers.now() - lastActivity > deadlineMs()) {
      if (!pingMeasured) {
        // No ping seen yet: the server may use a longer interval than the default.
        pingIntervalMs = Math.min(MAX_PING_INTERVAL_MS, pingIntervalMs * 2);
      }
      scheduleRetry('heartbeat');
    }
  }

  function startWatchdog() {
    if (watchdogTimer === null) {
      watchdogTimer = timers.setInterval(checkHeartbeat, WATCHDOG_TICK_MS);
    }
  }

  function stopWatchdog() {
    if (watchdogTimer !== null) {
      timers.clearInterval(watchdogTimer);
      watchdogTimer = null;
    }
  }

  /** Opens the stream from the start of a new query, forgetting the last event id. */
  function start() {
    lastEventId = '';
    attempt = 0;
    open();
  }

  /** Reopens the stream after `after` (a `lagged` event's cursor, say). */
  function resumeFrom(after) {
    if (after) {
      lastEventId = after;
    }
    open();
  }

  /** Opens at once when the stream is down or silent too long; for a tab that returns. */
  function check() {
    if (stopped) {
      return;
    }
    if (stream === null || stream.readyState === READY_STATE.CLOSED) {
      open();
      return;
    }
    checkHeartbeat();
    if (retryTimer !== null) {
      open();
    }
  }

  /** Opens at once, resuming after the last event id; for the Reconnect button. */
  function reconnectNow() {
    open();
  }

  /** Closes the stream and cancels every retry and timer. */
  function stop(reason = '') {
    stopped = true;
    clearRetry();
    closeStream();
    stopWatchdog();
    onStatus({ phase: 'stopped', reason, retryAt: null, attempt });
  }

  return {
    start,
    resumeFrom,
    check,
    reconnectNow,
    stop,
    get lastEventId() {
      return lastEventId;
    },
    get pingIntervalMs() {
      return pingIntervalMs;
    },
    get isOpen() {
      return stream !== null;
    },
  };
}
