// The page's four sections (Train, Draw, Evaluate, Runs), each with its URL fragment.
// On a phone (below 760 px) one section shows at a time: the one the fragment points
// into (#draw, or an element inside a section such as #augment), Train by default; the
// nav marks it with aria-current. From 760 px every section shows and a fragment just
// scrolls to it. Panels ask `isShown` (visibility.js) before drawing, so a hidden
// section costs nothing until it is chosen.

import { PAGE_EVENTS } from './events.js';

const PHONE = '(max-width: 759.98px)';

/**
 * @param {object} options
 * @param {HTMLElement} options.layout   the element holding the sections ([data-section])
 * @param {NodeListOf<HTMLAnchorElement>} options.links  the nav's links ([data-section-link])
 * @param {(name: string) => void} [options.onChange]  after another section is chosen
 */
export function createSections({ layout, links, onChange }) {
  const sections = new Map();
  for (const el of layout.querySelectorAll('[data-section]')) sections.set(el.dataset.section, el);
  const phone = window.matchMedia(PHONE);
  let current = null;

  /** The section a fragment points into, or null. */
  function sectionOf(hash) {
    const id = decodeURIComponent((hash || '').replace(/^#/, ''));
    if (!id) return null;
    const target = document.getElementById(id);
    const section = target?.closest('[data-section]');
    return section ? section.dataset.section : null;
  }

  function show(name, { focus = false } = {}) {
    if (!sections.has(name)) name = 'train';
    const changed = name !== current;
    current = name;
    layout.dataset.current = name;
    for (const [key, el] of sections) el.classList.toggle('is-current', key === name);
    for (const link of links) {
      if (link.dataset.sectionLink === name) link.setAttribute('aria-current', 'true');
      else link.removeAttribute('aria-current');
    }
    if (focus && phone.matches) {
      // On a phone the chosen section fills the screen from its top (the drawing pad and
      // its answer both in view); Train, the first screen, from the page's top, the nav
      // in view.
      if (name === 'train') window.scrollTo(0, 0);
      else sections.get(name).scrollIntoView({ block: 'start' });
    }
    if (changed) {
      // Panels that waited while their section was hidden draw now.
      document.dispatchEvent(new CustomEvent(PAGE_EVENTS.sectionShown, { detail: { section: name } }));
      if (onChange) onChange(name);
    }
  }

  window.addEventListener('hashchange', () => {
    const name = sectionOf(location.hash);
    if (name) show(name, { focus: name !== current });
    // On a phone the fragment's element may sit lower in its section: go to it.
    const id = decodeURIComponent(location.hash.replace(/^#/, ''));
    const target = id && document.getElementById(id);
    if (target && phone.matches && !target.matches('[data-section]')) target.scrollIntoView();
  });
  phone.addEventListener('change', () => {
    document.dispatchEvent(new CustomEvent(PAGE_EVENTS.sectionShown, { detail: { section: current } }));
    if (onChange) onChange(current);
  });

  show(sectionOf(location.hash) || 'train');
  return {
    current: () => current,
    show,
  };
}
