// Light and dark themes: the top bar's toggle (light / dark / system), kept in
// localStorage; "system" follows the system's setting, also when it changes later.
// The theme is the `data-theme` attribute of <html> ("light" or "dark"), which selects
// the CSS variables every colour comes from. Canvases (charts, filters, drawings) are
// painted with those colours, so they must be redrawn: onThemeChange tells when.

import { PAGE_EVENTS } from './events.js';

const STORAGE_KEY = 'cnn-live-theme';   // the same key as theme-boot.js
const CHOICES = ['light', 'dark', 'system'];
const EVENT = PAGE_EVENTS.themeChanged;
const systemDark = window.matchMedia('(prefers-color-scheme: dark)');

function savedChoice() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return CHOICES.includes(value) ? value : 'system';
  } catch {
    return 'system';
  }
}

function save(choice) {
  try {
    if (choice === 'system') localStorage.removeItem(STORAGE_KEY);
    else localStorage.setItem(STORAGE_KEY, choice);
  } catch {
    // storage refused (private mode): the choice lasts as long as the page
  }
}

let choice = savedChoice();

function resolve() {
  return choice === 'dark' || (choice === 'system' && systemDark.matches) ? 'dark' : 'light';
}

/** Set data-theme; tell the listeners when the resolved theme changed. */
function apply() {
  const root = document.documentElement;
  const theme = resolve();
  root.dataset.themeChoice = choice;
  if (root.dataset.theme === theme) return;
  root.dataset.theme = theme;
  document.dispatchEvent(new CustomEvent(EVENT, { detail: { theme, choice } }));
}

/** The theme in use: "light" or "dark". */
export function currentTheme() {
  return resolve();
}

/** `listener({theme, choice})` after every change of the theme in use. */
export function onThemeChange(listener) {
  document.addEventListener(EVENT, (event) => listener(event.detail));
}

/** Wires the toggle: radio inputs whose values are light, dark and system. */
export function createThemeToggle({ inputs }) {
  const radios = [...inputs];
  const show = () => {
    for (const radio of radios) radio.checked = radio.value === choice;
  };
  for (const radio of radios) {
    radio.addEventListener('change', () => {
      if (!radio.checked || !CHOICES.includes(radio.value)) return;
      choice = radio.value;
      save(choice);
      apply();
    });
  }
  systemDark.addEventListener('change', apply);
  // Another tab changed the choice.
  window.addEventListener('storage', (event) => {
    if (event.key !== STORAGE_KEY && event.key !== null) return;
    choice = savedChoice();
    show();
    apply();
  });
  show();
  apply();
}
