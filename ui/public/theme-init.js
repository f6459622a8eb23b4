// Applies the stored theme before first paint (no flash); the app keeps it in sync. A file of
// its own, not an inline script: the Content-Security-Policy allows scripts from 'self' only.
(function () {
  try {
    var t = localStorage.getItem('cortex.theme') || 'system';
    var dark = t === 'dark' || (t === 'system' && matchMedia('(prefers-color-scheme: dark)').matches);
    document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  } catch (e) {}
})();
