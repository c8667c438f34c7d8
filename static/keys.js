// Keyboard shortcuts of the page: "/" search, Space pause, J/K next and previous row,
// Enter details, Esc close. Keys typed into a form field stay with the field, except
// Esc, which leaves it.

const TEXT_INPUT_TYPES = new Set([
  'text',
  'search',
  'number',
  'datetime-local',
  'email',
  'url',
  'tel',
  'password',
]);

/** Returns true when key presses on `element` type text or pick a value. */
export function isEditable(element) {
  if (!(element instanceof HTMLElement)) {
    return false;
  }
  if (
    element.isContentEditable ||
    element instanceof HTMLTextAreaElement ||
    element instanceof HTMLSelectElement
  ) {
    return true;
  }
  return element instanceof HTMLInputElement && TEXT_INPUT_TYPES.has(element.type);
}

// Elements whose own activation (Space, Enter) must keep working.
function isActivatable(element) {
  return (
    element instanceof HTMLElement &&
    element.closest('button, a[href], summary, input, select, label') !== null
  );
}

/**
 * Listens for the shortcuts on `target` (the document). `actions` has focusSearch,
 * togglePause, moveSelection(delta), openSelected and closeDetails; closeDetails
 * returns true when it closed something.
 */
export function bindShortcuts(target, actions) {
  target.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) {
      return;
    }
    const element = event.target;
    if (event.key === 'Escape') {
      if (actions.closeDetails()) {
        event.preventDefault();
      } else if (isEditable(element)) {
        element.blur();
      }
      return;
    }
    if (isEditable(element)) {
      return;
    }
    switch (event.key) {
      case '/':
        actions.focusSearch();
        break;
      case ' ':
        if (isActivatable(element)) {
          return;
        }
        actions.togglePause();
        break;
      case 'j':
      case 'J':
        actions.moveSelection(1);
        break;
      case 'k':
      case 'K':
        actions.moveSelection(-1);
        break;
      case 'Enter':
        if (isActivatable(element)) {
          return;
        }
        actions.openSelected();
        break;
      default:
        return;
    }
    event.preventDefault();
  });
}
