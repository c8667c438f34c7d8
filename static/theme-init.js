// Applies the stored theme choice before the first paint. A classic script, loaded in
// <head> without defer, because a module would run after the page had been drawn once
// in the system theme. theme.js owns the toggle and the stored value.
(function applyStoredTheme() {
  try {
    const theme = window.localStorage.getItem('aria-stream-theme');
    if (theme === 'light' || theme === 'dark') {
      document.documentElement.dataset.theme = theme;
    }
  } catch (error) {
    // Storage can be disabled; the page then follows the system theme.
  }
})();
