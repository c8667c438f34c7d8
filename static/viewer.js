// Wires the viewer page: the view state in the URL, the row store, the virtual table,
// the summary, the detail panel, the keyboard and one stream per tab.
//
// Rows from the stream go into the store at once, because that is cheap and works in
// hidden tabs, where animation frames stop. The DOM is updated once per animation frame.

import { createConnection } from './connection.js';
import { createDetailPanel } from './details.js';
import { createFilterBar } from './filterbar.js';
import {
  createRowMatcher,
  exportUrl,
  hasPageFilters,
  PAGE_FILTERS,
  parseViewState,
  serializeViewState,
  serverQueryKey,
  streamUrl,
} from './filters.js';
import { readErrorMessage } from './http.js';
import { bindShortcuts } from './keys.js';
import { createStatusView } from './status.js';
import { createRowStore } from './store.js';
import { createStreamHandlers } from './streamevents.js';
import { createSummaryView } from './summary.js';
import { createVirtualTable } from './table.js';
import { bindThemeToggle } from './theme.js';

const SELECTORS = {
  scroller: '#table-scroll',
  table: '#spend-table',
  rows: '#spend-rows',
  pill: '#new-rows',
  themeToggle: '#theme-toggle',
};
// Used when style.css does not define --row-height.
const FALLBACK_ROW_HEIGHT = 30;
// The summary is redrawn at most this often; the totals behind it are always current.
const SUMMARY_INTERVAL_MS = 250;

function readRowHeight() {
  const value = Number.parseFloat(
    getComputedStyle(document.documentElement).getPropertyValue('--row-height'),
  );
  return value > 0 ? value : FALLBACK_ROW_HEIGHT;
}

function requireElement(selector) {
  const element = document.querySelector(selector);
  if (element === null) {
    throw new Error(`Missing element ${selector} in the viewer page. Check that index.html contains it.`);
  }
  return element;
}

// Counts for tests and for anyone debugging in the console; the page never reads them.
function publishCounts(store, table) {
  const counters = store.counters;
  const dataset = document.body.dataset;
  dataset.rowCount = String(store.rowCount);
  dataset.viewCount = String(store.view.length);
  dataset.heldCount = String(store.heldCount);
  dataset.receivedCount = String(counters.received);
  dataset.droppedCount = String(counters.dropped);
  dataset.duplicateCount = String(counters.duplicates);
  dataset.renderedRows = String(table.renderedRows);
}

function startViewer() {
  let state = parseViewState(window.location.search);
  const store = createRowStore({
    maxRows: state.maxRows,
    matcher: createRowMatcher(state),
    paused: state.paused,
  });
  const status = createStatusView(document);
  const summary = createSummaryView(document);

  let frameRequested = false;
  let summaryDirty = true;
  let summaryDrawnAt = 0;
  let summaryTimer = null;

  function requestFrame() {
    if (!frameRequested) {
      frameRequested = true;
      window.requestAnimationFrame(drawFrame);
    }
  }

  const table = createVirtualTable({
    scroller: requireElement(SELECTORS.scroller),
    table: requireElement(SELECTORS.table),
    tbody: requireElement(SELECTORS.rows),
    pill: requireElement(SELECTORS.pill),
    view: store.view,
    rowHeight: readRowHeight(),
    requestRender: requestFrame,
    onOpen: (record) => details.open(record),
  });
  const details = createDetailPanel(document, { onClose: () => table.focusSelected() });
  const filterBar = createFilterBar(document, { onChange: applyPatch });

  const stream = createStreamHandlers({
    store,
    status,
    onRows: (entries) => {
      for (const entry of entries) {
        filterBar.suggestFrom(entry);
      }
      summaryDirty = true;
      requestFrame();
    },
    onReset: () => {
      details.close({ returnFocus: false });
      table.jumpToEdge();
      summaryDirty = true;
      requestFrame();
    },
    onLagged: (cursor) => connection.resumeFrom(cursor),
  });
  const connection = createConnection({
    buildUrl: (after) => streamUrl(state, { after }),
    handlers: stream.handlers,
    onStatus: (connectionStatus) => {
      stream.onConnectionStatus(connectionStatus);
      if (connectionStatus.phase === 'waiting' && connectionStatus.reason === 'refused') {
        diagnoseRefusal();
      }
    },
  });

  // EventSource hides the status of a refused stream, so the page requests the stream URL
  // once more with fetch to read it. Retrying cannot help after a 400 (an invalid query) or
  // a 401 (the session has ended), so the page stops and shows why.
  async function diagnoseRefusal() {
    const queryKey = serverQueryKey(state);
    const controller = new AbortController();
    let response;
    try {
      response = await fetch(streamUrl(state), { signal: controller.signal, cache: 'no-store' });
    } catch {
      return; // The server is unreachable; the scheduled retry covers that.
    }
    if (response.ok) {
      controller.abort(); // The server takes streams again; the retry opens the real one.
      return;
    }
    const message = await readErrorMessage(response);
    if (serverQueryKey(state) !== queryKey) {
      return; // The query changed meanwhile, so this response is about a stream that is gone.
    }
    if (response.status === 401) {
      connection.stop('signed-out');
    } else if (response.status === 400) {
      connection.stop('rejected');
      status.setState('disconnected', { hint: `The server rejected the query: ${message}` });
    } else {
      status.showHint(message);
    }
  }

  function drawSummary() {
    const now = performance.now();
    const wait = summaryDrawnAt + SUMMARY_INTERVAL_MS - now;
    if (wait > 0) {
      summaryTimer ??= window.setTimeout(() => {
        summaryTimer = null;
        requestFrame();
      }, wait);
      return;
    }
    summary.render(store.stats.snapshot());
    summaryDirty = false;
    summaryDrawnAt = now;
  }

  // The summary goes first: a change of its height resizes the table, which then places its
  // rows for the new size.
  function drawFrame() {
    frameRequested = false;
    if (summaryDirty) {
      drawSummary();
    }
    table.render(store.takeChanges());
    status.showRowSummary({
      rowCount: store.rowCount,
      viewCount: store.view.length,
      droppedCount: store.counters.dropped,
      heldCount: store.heldCount,
      maxRows: store.maxRows,
      filtered: hasPageFilters(state),
    });
    status.showEmptyNote(stream.backfillDone && store.view.length === 0 && store.heldCount === 0);
    publishCounts(store, table);
  }

  function updateExportLinks() {
    filterBar.setExportLinks({ csv: exportUrl(state, 'csv'), jsonl: exportUrl(state, 'jsonl') });
  }

  function restartStream() {
    store.clear();
    details.close({ returnFocus: false });
    table.jumpToEdge();
    stream.forget();
    summaryDirty = true;
    connection.start();
  }

  function applyPatch(patch) {
    const previous = state;
    state = { ...state, ...patch };
    window.history.replaceState(null, '', `${window.location.pathname}${serializeViewState(state)}`);
    filterBar.showState(state);
    updateExportLinks();

    if (serverQueryKey(previous) !== serverQueryKey(state)) {
      restartStream();
    }
    if ([...PAGE_FILTERS, 'q'].some((name) => previous[name] !== state[name])) {
      store.setMatcher(createRowMatcher(state));
      summaryDirty = true;
    }
    if (previous.order !== state.order) {
      table.setOrder(state.order);
    }
    if (previous.paused !== state.paused) {
      store.setPaused(state.paused);
      summaryDirty = true;
    }
    if (previous.maxRows !== state.maxRows) {
      store.setMaxRows(state.maxRows);
      summaryDirty = true;
    }
    requestFrame();
  }

  function moveSelection(delta) {
    const record = table.moveSelection(delta);
    if (record !== null && details.isOpen) {
      details.open(record);
    }
    table.focusSelected();
  }

  function openSelected() {
    const record = table.selectedRecord() ?? table.moveSelection(0);
    if (record !== null) {
      details.open(record);
    }
  }

  bindShortcuts(document, {
    focusSearch: () => filterBar.focusSearch(),
    togglePause: () => applyPatch({ paused: !state.paused }),
    moveSelection,
    openSelected,
    closeDetails: () => {
      const wasOpen = details.isOpen;
      details.close();
      return wasOpen;
    },
  });
  bindThemeToggle(requireElement(SELECTORS.themeToggle));
  status.onReconnectClick(() => connection.reconnectNow());
  // A range preset such as "last 15 min" is relative to the moment of the download.
  for (const link of document.querySelectorAll('#export-csv, #export-jsonl')) {
    link.addEventListener('click', updateExportLinks);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      connection.check();
      requestFrame();
    }
  });
  window.addEventListener('pagehide', () => connection.stop('pagehide'));
  // A page restored from the back/forward cache had its stream closed on pagehide.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) {
      connection.reconnectNow();
    }
  });
  window.addEventListener('offline', () => {
    connection.stop('offline');
  });
  window.addEventListener('online', () => connection.reconnectNow());

  filterBar.showState(state);
  updateExportLinks();
  table.setOrder(state.order);
  connection.start();
  requestFrame();
}

startViewer();
