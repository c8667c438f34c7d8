// The theme toggle: system, light, dark, in turn. The choice is stored in localStorage
// (it is a preference of the person, not part of a shared link) and applied as
// data-theme on <html>; style.css maps it to color-scheme.

export const THEME_STORAGE_KEY = 'aria-stream-theme';
const THEMES = ['system', 'light', 'dark'];

function readTheme() {
  try {
    const stored = window.localStorage.getItem(THEME_STORAGE_KEY);
    return THEMES.includes(stored) ? stored : 'system';
  } catch {
    return 'system';
  }
}

function storeTheme(theme) {
  try {
    if (theme === 'system') {
      window.localStorage.removeItem(THEME_STORAGE_KEY);
    } else {
      window.localStorage.setItem(THEME_STORAGE_KEY, theme);
    }
  } catch (error) {
    console.warn('Could not store the theme choice.', error);
  }
}

function applyTheme(theme, button) {
  if (theme === 'system') {
    delete document.documentElement.dataset.theme;
  } else {
    document.documentElement.dataset.theme = theme;
  }
  button.textContent = `Theme: ${theme}`;
  button.title = 'Switch between the system theme, light and dark';
}

/** Binds the toggle button and shows the current choice on it. */
export function bindThemeToggle(button) {
  let theme = readTheme();
  applyTheme(theme, button);
  button.addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    storeTheme(theme);
    applyTheme(theme, button);
  });
}
