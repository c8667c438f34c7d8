// Batches incoming spend log entries into the table body: entries wait in a queue
// and one animation frame callback renders them all, so a fast backfill does not
// cause a layout per event. With entries in stream order, the newest row stays at
// the top.

/**
 * Creates the row buffer for `tbody`.
 *
 * Options: `maxRows` caps the rows kept in the table, `renderRow(entry)` returns a
 * <tr>, `requestFrame(callback)` schedules the flush (requestAnimationFrame by
 * default), and `onFlush({ rowCount, droppedCount })` runs after each flush and clear.
 *
 * Returns { queueEntries, clear, rowCount, pendingCount, droppedCount }.
 */
export function createRowTable(tbody, {
  maxRows,
  renderRow,
  requestFrame = (callback) => requestAnimationFrame(callback),
  onFlush = () => {},
}) {
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    throw new RangeError(`Invalid maxRows ${maxRows}: expected a positive integer.`);
  }

  // Both queues are in display order, top row first. Live rows go above the rows in
  // the table and backfill rows go below them.
  let pendingTop = [];
  let pendingBottom = [];
  let rowCount = 0;
  let droppedCount = 0;
  let flushRequested = false;

  function pendingCount() {
    return pendingTop.length + pendingBottom.length;
  }

  function queueLiveEntries(entries) {
    // Each live event lists its rows oldest first and is newer than earlier events.
    pendingTop = [...entries].reverse().concat(pendingTop);
    // Frames do not run in hidden tabs, so cap the queue here as well.
    if (pendingTop.length > maxRows) {
      droppedCount += pendingTop.length - maxRows;
      pendingTop.length = maxRows;
    }
  }

  function queueBackfillEntries(entries) {
    // Backfill rows are older than everything shown, so those beyond the limit would
    // be trimmed right away. Counting them without rendering saves the work.
    const room = Math.max(0, maxRows - rowCount - pendingCount());
    const accepted = entries.slice(0, room);
    droppedCount += entries.length - accepted.length;
    pendingBottom.push(...accepted);
  }

  function renderFragment(entries) {
    const fragment = document.createDocumentFragment();
    for (const entry of entries) {
      fragment.append(renderRow(entry));
    }
    return fragment;
  }

  function trimToLimit() {
    while (rowCount > maxRows) {
      tbody.lastElementChild.remove();
      rowCount -= 1;
      droppedCount += 1;
    }
  }

  function notify() {
    onFlush({ rowCount, droppedCount });
  }

  // Inserts one fragment per queue. Live rows only arrive after the backfill is
  // done, so both queues hold rows in the same frame only at that switch.
  function flush() {
    flushRequested = false;
    if (pendingTop.length > 0) {
      tbody.prepend(renderFragment(pendingTop));
      rowCount += pendingTop.length;
      pendingTop = [];
    }
    if (pendingBottom.length > 0) {
      tbody.append(renderFragment(pendingBottom));
      rowCount += pendingBottom.length;
      pendingBottom = [];
    }
    trimToLimit();
    notify();
  }

  function scheduleFlush() {
    if (!flushRequested) {
      flushRequested = true;
      requestFrame(flush);
    }
  }

  /**
   * Queues entries for the next frame. Backfill entries (`live` false) arrive newest
   * first and go below the rows shown. Live entries arrive oldest first and go on top
   * in reverse, so that the newest row stays at the top.
   */
  function queueEntries(entries, { live = false } = {}) {
    if (entries.length === 0) {
      return;
    }
    if (live) {
      queueLiveEntries(entries);
    } else {
      queueBackfillEntries(entries);
    }
    scheduleFlush();
  }

  /** Removes all rows, queued entries and the dropped count. */
  function clear() {
    pendingTop = [];
    pendingBottom = [];
    tbody.replaceChildren();
    rowCount = 0;
    droppedCount = 0;
    notify();
  }

  return {
    queueEntries,
    clear,
    get rowCount() {
      return rowCount;
    },
    get pendingCount() {
      return pendingCount();
    },
    get droppedCount() {
      return droppedCount;
    },
  };
}
