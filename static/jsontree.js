// Renders a JSON value as a tree of <details> elements. The children of an object or
// array are built the first time it is opened, so a large metadata blob costs nothing
// until someone looks at it. Text goes in through textContent only.

function createElement(tag, className, text) {
  const element = document.createElement(tag);
  if (className) {
    element.className = className;
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

function describeContainer(value) {
  if (Array.isArray(value)) {
    return value.length === 1 ? '[1 item]' : `[${value.length} items]`;
  }
  const count = Object.keys(value).length;
  return count === 1 ? '{1 key}' : `{${count} keys}`;
}

function leafClass(value) {
  if (value === null) {
    return 'json-null';
  }
  return `json-${typeof value}`;
}

function leafText(value) {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function isContainer(value) {
  return value !== null && typeof value === 'object';
}

function appendLabel(parent, label) {
  if (label !== null) {
    parent.append(createElement('span', 'json-key', label), ': ');
  }
}

function renderChildren(container, value) {
  const entries = Array.isArray(value)
    ? value.map((item, index) => [String(index), item])
    : Object.entries(value);
  const list = createElement('div', 'json-children');
  for (const [key, item] of entries) {
    list.append(renderJsonNode(item, key));
  }
  container.append(list);
}

/**
 * Returns the DOM node for `value` under the key `label` (null for the root). Objects
 * and arrays become <details>, open when `open` is true.
 */
export function renderJsonNode(value, label = null, { open = false } = {}) {
  if (!isContainer(value)) {
    const leaf = createElement('div', 'json-leaf');
    appendLabel(leaf, label);
    leaf.append(createElement('span', leafClass(value), leafText(value)));
    return leaf;
  }
  const details = createElement('details', 'json-node');
  const summary = createElement('summary');
  appendLabel(summary, label);
  summary.append(createElement('span', 'json-count', describeContainer(value)));
  details.append(summary);
  let built = false;
  const build = () => {
    if (!built && details.open) {
      built = true;
      renderChildren(details, value);
    }
  };
  details.addEventListener('toggle', build);
  details.open = open;
  build();
  return details;
}
