// A virtual table: only the rows in view (plus a few above and below) exist in the DOM,
// and two spacer rows stand in for the others. Every row has the same height, so the
// rows to show follow from scrollTop alone, and rendering costs the same for 100 rows
// as for 100,000.
//
// Follow mode keeps the newest rows in view while the user is at that edge (the top in
// "newest" order, the bottom in "tail" order). Away from the edge, rows added or dropped
// above the viewport move scrollTop by the same amount, so the rows being read stay put,
// and a pill counts the new rows and jumps back to the edge.

import { createRowElement, DATA_ROW_CLASS, fillRow } from './render.js';
import { formatCount } from './format.js';
import { ORDERS } from './filters.js';

// Rows rendered beyond each side of the viewport, so a fast scroll shows no gap.
const OVERSCAN_ROWS = 8;
const COLUMN_COUNT = 8;

function createSpacer() {
  const row = document.createElement('tr');
  row.className = 'spacer';
  row.setAttribute('aria-hidden', 'true');
  const cell = document.createElement('td');
  cell.colSpan = COLUMN_COUNT;
  row.append(cell);
  return row;
}

/**
 * Creates the virtual table.
 *
 * `view` is the RowDeque of rows to show (index 0 oldest), `rowHeight` the fixed row
 * height in pixels, `requestRender()` requests render() on the next frame, and
 * `onOpen(record)` runs when a row is clicked.
 */
export function createVirtualTable({ scroller, table, tbody, pill, view, rowHeight, requestRender, onOpen }) {
  const topSpacer = createSpacer();
  const bottomSpacer = createSpacer();
  tbody.replaceChildren(topSpacer, bottomSpacer);

  const pool = [];
  const boundSeq = [];
  let order = ORDERS.newest;
  let following = true;
  let newCount = 0;
  let selectedSeq = null;
  let focusPending = false;
  // The scrollTop this code set last. Its scroll event arrives a frame later, when the
  // layout may have changed, so that event must not decide whether the user left the edge.
  let ownScrollTop = null;
  let viewportHeight = scroller.clientHeight;
  let headerHeight = table.tHead?.offsetHeight ?? 0;

  function recordAt(displayIndex) {
    return order === ORDERS.newest ? view.at(view.length - 1 - displayIndex) : view.at(displayIndex);
  }

  function displayIndexOf(seq) {
    const index = view.indexOfSeq(seq);
    if (index < 0) {
      return -1;
    }
    return order === ORDERS.newest ? view.length - 1 - index : index;
  }

  function bodyHeight() {
    return Math.max(rowHeight, viewportHeight - headerHeight);
  }

  // An estimate from the row count, for choosing the rows to draw before the layout is done.
  function maxScrollTop() {
    return Math.max(0, view.length * rowHeight + headerHeight - viewportHeight);
  }

  // The measured maximum, which also counts scroll bars and anything else in the scroller.
  function measuredMaxScrollTop() {
    return Math.max(0, scroller.scrollHeight - scroller.clientHeight);
  }

  function edgeScrollTop() {
    return order === ORDERS.newest ? 0 : maxScrollTop();
  }

  function isAtEdge(scrollTop) {
    const edge = order === ORDERS.newest ? 0 : measuredMaxScrollTop();
    return Math.abs(scrollTop - edge) <= rowHeight / 2;
  }

  // Rows added above the viewport minus rows removed above it, for the latest changes.
  function shiftAbove(changes) {
    if (order === ORDERS.newest) {
      return changes.newestAdded;
    }
    return changes.oldestAdded - changes.oldestRemoved;
  }

  function ensurePool(size) {
    while (pool.length < size) {
      const row = createRowElement();
      pool.push(row);
      boundSeq.push(null);
      bottomSpacer.before(row);
    }
    while (pool.length > size) {
      pool.pop().remove();
      boundSeq.pop();
    }
  }

  function paintRows(first, last) {
    // Row elements are reused for other rows as the view moves, so focus follows the
    // selected row rather than the element that had it.
    const focusInRows =
      (focusPending && document.activeElement === scroller) || tbody.contains(document.activeElement);
    ensurePool(last - first);
    for (let offset = 0; offset < pool.length; offset += 1) {
      const record = recordAt(first + offset);
      const row = pool[offset];
      if (boundSeq[offset] !== record.seq) {
        fillRow(row, record.entry);
        boundSeq[offset] = record.seq;
      }
      row.setAttribute('aria-rowindex', String(first + offset + 2));
      const selected = record.seq === selectedSeq;
      row.setAttribute('aria-selected', selected ? 'true' : 'false');
      row.tabIndex = selected ? 0 : -1;
    }
    topSpacer.style.height = `${first * rowHeight}px`;
    bottomSpacer.style.height = `${(view.length - last) * rowHeight}px`;
    table.setAttribute('aria-rowcount', String(view.length + 1));
    if (focusInRows) {
      focusSelected();
    }
  }

  function updatePill() {
    const visible = !following && newCount > 0;
    pill.hidden = !visible;
    pill.dataset.order = order;
    if (visible) {
      const arrow = order === ORDERS.newest ? '↑' : '↓';
      pill.textContent = `${arrow} ${formatCount(newCount)} new`;
    }
  }

  /**
   * Renders the rows in view after `changes` ({ newestAdded, oldestAdded,
   * oldestRemoved, rebuilt }) to the view, keeping the rows being read in place.
   */
  function render(changes = { newestAdded: 0, oldestAdded: 0, oldestRemoved: 0, rebuilt: false }) {
    let scrollTop = scroller.scrollTop;
    if (following) {
      scrollTop = edgeScrollTop();
    } else if (!changes.rebuilt) {
      scrollTop += shiftAbove(changes) * rowHeight;
      newCount += changes.newestAdded;
    }
    // The estimate may miss a scroll bar, so allow one row more; the browser clamps the rest.
    scrollTop = Math.min(Math.max(0, scrollTop), maxScrollTop() + rowHeight);

    const first = Math.max(0, Math.floor(scrollTop / rowHeight) - OVERSCAN_ROWS);
    const visibleRows = Math.ceil(bodyHeight() / rowHeight) + 1;
    const last = Math.min(view.length, Math.floor(scrollTop / rowHeight) + visibleRows + OVERSCAN_ROWS);
    paintRows(first, Math.max(first, last));
    if (following && order === ORDERS.tail) {
      scrollTop = measuredMaxScrollTop();
    }
    if (Math.abs(scroller.scrollTop - scrollTop) >= 1) {
      scroller.scrollTop = scrollTop;
      ownScrollTop = scroller.scrollTop;
    }
    updatePill();
  }

  function onScroll() {
    if (ownScrollTop !== null && Math.abs(scroller.scrollTop - ownScrollTop) < 1) {
      ownScrollTop = null;
      requestRender();
      return;
    }
    ownScrollTop = null;
    const atEdge = isAtEdge(scroller.scrollTop);
    if (atEdge !== following) {
      following = atEdge;
      if (following) {
        newCount = 0;
      }
    }
    requestRender();
  }

  function jumpToEdge() {
    following = true;
    newCount = 0;
    requestRender();
  }

  function setOrder(value) {
    order = value;
    boundSeq.fill(null);
    jumpToEdge();
  }

  function scrollIntoView(displayIndex) {
    const top = displayIndex * rowHeight;
    const current = scroller.scrollTop;
    let target = current;
    if (top < current) {
      target = top;
    } else if (top + rowHeight > current + bodyHeight()) {
      target = top + rowHeight - bodyHeight();
    }
    if (target !== current) {
      scroller.scrollTop = target;
      following = isAtEdge(target);
    }
  }

  function select(seq) {
    selectedSeq = seq;
    const index = seq === null ? -1 : displayIndexOf(seq);
    if (index >= 0) {
      scrollIntoView(index);
    }
    requestRender();
    return index >= 0 ? recordAt(index) : null;
  }

  /** Moves the selection by `delta` rows in display order and returns the new record. */
  function moveSelection(delta) {
    if (view.length === 0) {
      return null;
    }
    const index = selectedSeq === null ? -1 : displayIndexOf(selectedSeq);
    if (index < 0) {
      // Nothing selected yet, or the selected row left the view: start at the top row in view.
      const firstVisible = Math.min(view.length - 1, Math.ceil(scroller.scrollTop / rowHeight));
      return select(recordAt(firstVisible).seq);
    }
    const next = Math.min(view.length - 1, Math.max(0, index + delta));
    return select(recordAt(next).seq);
  }

  function selectedRecord() {
    if (selectedSeq === null) {
      return null;
    }
    const index = displayIndexOf(selectedSeq);
    return index >= 0 ? recordAt(index) : null;
  }

  // Focuses the selected row, or the scroller until the next render shows that row.
  function focusSelected() {
    const offset = selectedSeq === null ? -1 : boundSeq.indexOf(selectedSeq);
    focusPending = offset < 0 && selectedSeq !== null;
    const target = offset >= 0 ? pool[offset] : scroller;
    if (document.activeElement !== target) {
      target.focus({ preventScroll: true });
    }
  }

  tbody.addEventListener('click', (event) => {
    const row = event.target.closest(`tr.${DATA_ROW_CLASS}`);
    const offset = pool.indexOf(row);
    if (offset < 0 || boundSeq[offset] === null) {
      return;
    }
    const record = select(boundSeq[offset]);
    if (record !== null) {
      onOpen(record);
    }
  });
  scroller.addEventListener('scroll', onScroll, { passive: true });
  pill.addEventListener('click', jumpToEdge);
  new ResizeObserver(() => {
    viewportHeight = scroller.clientHeight;
    headerHeight = table.tHead?.offsetHeight ?? 0;
    requestRender();
  }).observe(scroller);

  return {
    render,
    setOrder,
    jumpToEdge,
    select,
    moveSelection,
    selectedRecord,
    focusSelected,
    get following() {
      return following;
    },
    get renderedRows() {
      return pool.length;
    },
  };
}
