// Applies the saved theme before the page is first drawn, so that a dark page never
// flashes light. A classic (blocking) script in <head>: the page's CSP allows no inline
// script, and a module would run only after the first paint. theme.js does the rest.
(function () {
  var choice = 'system';
  try {
    choice = localStorage.getItem('cnn-live-theme') || 'system';
  } catch (error) {
    // storage refused: follow the system
  }
  if (choice !== 'light' && choice !== 'dark') choice = 'system';
  var systemDark = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches;
  var dark = choice === 'dark' || (choice === 'system' && systemDark);
  document.documentElement.setAttribute('data-theme', dark ? 'dark' : 'light');
  // The toggle shows this choice before theme.js checks its radio (see app.css).
  document.documentElement.setAttribute('data-theme-choice', choice);
}());
