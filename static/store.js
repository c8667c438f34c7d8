// The rows the page holds, kept in bounded ring buffers so that adding a row, dropping
// the oldest one and reading any position cost the same whatever the row count.
//
// Rows are ordered by arrival: live rows join at the newest end, backfill rows (which
// are older than everything held) at the oldest end. Each row record carries a `seq`
// that grows towards the newest end, so a position can be found by binary search.

import { createStats } from './stats.js';

/** A double-ended queue over a fixed-size ring buffer; index 0 is the oldest item. */
export class RowDeque {
  constructor(capacity) {
    this.items = new Array(capacity);
    this.head = 0;
    this.size = 0;
  }

  get capacity() {
    return this.items.length;
  }

  get length() {
    return this.size;
  }

  at(index) {
    if (index < 0 || index >= this.size) {
      return undefined;
    }
    return this.items[(this.head + index) % this.items.length];
  }

  newest() {
    return this.at(this.size - 1);
  }

  oldest() {
    return this.at(0);
  }

  pushNewest(item) {
    if (this.size === this.items.length) {
      throw new RangeError(`RowDeque is full (${this.size} items).`);
    }
    this.items[(this.head + this.size) % this.items.length] = item;
    this.size += 1;
  }

  pushOldest(item) {
    if (this.size === this.items.length) {
      throw new RangeError(`RowDeque is full (${this.size} items).`);
    }
    this.head = (this.head - 1 + this.items.length) % this.items.length;
    this.items[this.head] = item;
    this.size += 1;
  }

  shiftOldest() {
    if (this.size === 0) {
      return undefined;
    }
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.size -= 1;
    return item;
  }

  clear() {
    this.items.fill(undefined);
    this.head = 0;
    this.size = 0;
  }

  /** Copies the items into a buffer of a new capacity, which must hold them all. */
  resize(capacity) {
    if (capacity < this.size) {
      throw new RangeError(`Cannot resize a RowDeque of ${this.size} items to ${capacity}.`);
    }
    const items = new Array(capacity);
    for (let index = 0; index < this.size; index += 1) {
      items[index] = this.at(index);
    }
    this.items = items;
    this.head = 0;
  }

  /** Returns the index of the item whose `seq` equals `seq`, or -1. Items must be sorted by seq. */
  indexOfSeq(seq) {
    let low = 0;
    let high = this.size - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const value = this.at(middle).seq;
      if (value === seq) {
        return middle;
      }
      if (value < seq) {
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return -1;
  }
}

function emptyChanges() {
  return { newestAdded: 0, oldestAdded: 0, oldestRemoved: 0, rebuilt: false };
}

/**
 * Creates the row store.
 *
 * `maxRows` caps the rows held; past it the oldest row is dropped and counted.
 * `matcher` is null or a predicate over row records ({ seq, entry, text }) for the
 * page-side filters; the matching rows form the view, and the stats describe the view.
 * While paused, live rows wait in a queue of their own (also capped at `maxRows`) and
 * join the view on resume; backfill rows still go in, because they land at the far end.
 */
export function createRowStore({ maxRows, matcher = null, paused = false }) {
  let capacity = maxRows;
  const rows = new RowDeque(capacity);
  const view = new RowDeque(capacity);
  const held = new RowDeque(capacity);
  const byId = new Map();
  let stats = createStats();
  let matches = matcher;
  let isPaused = paused;
  let newestSeq = 0;
  let oldestSeq = 0;
  let changes = emptyChanges();
  const counters = { received: 0, dropped: 0, duplicates: 0 };

  function inView(record) {
    return matches === null || matches(record);
  }

  function forget(record) {
    byId.delete(record.entry.request_id);
    counters.dropped += 1;
  }

  function dropOldest() {
    const record = rows.shiftOldest();
    forget(record);
    if (record.inView) {
      view.shiftOldest();
      stats.remove(record.entry);
      changes.oldestRemoved += 1;
    }
  }

  function insertNewest(record) {
    if (rows.length === capacity) {
      dropOldest();
    }
    rows.pushNewest(record);
    if (inView(record)) {
      record.inView = true;
      view.pushNewest(record);
      stats.add(record.entry);
      changes.newestAdded += 1;
    }
  }

  function accept(entry) {
    const id = entry.request_id;
    if (byId.has(id)) {
      counters.duplicates += 1;
      return null;
    }
    counters.received += 1;
    return { seq: 0, entry, text: null, inView: false };
  }

  /** Adds live entries, given oldest first, at the newest end (or to the queue while paused). */
  function addLive(entries) {
    for (const entry of entries) {
      const record = accept(entry);
      if (record === null) {
        continue;
      }
      newestSeq += 1;
      record.seq = newestSeq;
      byId.set(entry.request_id, record);
      if (!isPaused) {
        insertNewest(record);
        continue;
      }
      if (held.length === capacity) {
        forget(held.shiftOldest());
      }
      held.pushNewest(record);
    }
  }

  /** Adds backfill entries, given newest first, at the oldest end; past the cap they are dropped. */
  function addBackfill(entries) {
    for (const entry of entries) {
      const record = accept(entry);
      if (record === null) {
        continue;
      }
      if (rows.length === capacity) {
        // Older than every row held, so it is the one to drop.
        counters.dropped += 1;
        continue;
      }
      oldestSeq -= 1;
      record.seq = oldestSeq;
      byId.set(entry.request_id, record);
      rows.pushOldest(record);
      if (inView(record)) {
        record.inView = true;
        view.pushOldest(record);
        stats.add(record.entry);
        changes.oldestAdded += 1;
      }
    }
  }

  function rebuildView() {
    view.clear();
    stats = createStats();
    for (let index = 0; index < rows.length; index += 1) {
      const record = rows.at(index);
      record.inView = inView(record);
      if (record.inView) {
        view.pushNewest(record);
        stats.add(record.entry);
      }
    }
    changes = emptyChanges();
    changes.rebuilt = true;
  }

  /** Replaces the page-side filter and rebuilds the view (one pass over the rows held). */
  function setMatcher(predicate) {
    matches = predicate;
    rebuildView();
  }

  /** Pauses or resumes; resuming moves the queued live rows into the view, oldest first. */
  function setPaused(value) {
    isPaused = value;
    if (isPaused) {
      return;
    }
    while (held.length > 0) {
      insertNewest(held.shiftOldest());
    }
  }

  /** Changes the row cap, dropping the oldest rows beyond it. */
  function setMaxRows(value) {
    while (rows.length > value) {
      dropOldest();
    }
    while (held.length > value) {
      forget(held.shiftOldest());
    }
    capacity = value;
    rows.resize(value);
    view.resize(value);
    held.resize(value);
  }

  /** Forgets every row and counter, as after a `reset` event or a new query. */
  function clear() {
    rows.clear();
    view.clear();
    held.clear();
    byId.clear();
    stats = createStats();
    counters.received = 0;
    counters.dropped = 0;
    counters.duplicates = 0;
    changes = emptyChanges();
    changes.rebuilt = true;
  }

  /** Returns and resets the view changes since the last call, for scroll anchoring. */
  function takeChanges() {
    const taken = changes;
    changes = emptyChanges();
    return taken;
  }

  return {
    addLive,
    addBackfill,
    setMatcher,
    setPaused,
    setMaxRows,
    clear,
    takeChanges,
    view,
    get stats() {
      return stats;
    },
    get rowCount() {
      return rows.length;
    },
    get heldCount() {
      return held.length;
    },
    get maxRows() {
      return capacity;
    },
    get paused() {
      return isPaused;
    },
    get counters() {
      return { ...counters };
    },
  };
}
