// Whether a panel can be seen: on screen (or nearly) and not in a hidden section. A
// panel that cannot be seen keeps its data but does not draw; it is brought up to date
// when it comes into view. On a phone throttled 4x, drawing charts and tiles nobody
// sees was most of the main thread's time while a run trained (issue 13).

import { PAGE_EVENTS } from './events.js';
import { frameTask } from './format.js';

// Drawn a little before it scrolls into view, so that it is ready when it arrives.
const MARGIN = '200px 0px';

let observer = null;
const watched = new Map();   // element -> {shown, listeners}

function observe(el) {
  if (!observer) {
    observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const state = watched.get(entry.target);
        if (!state) continue;
        const shown = entry.isIntersecting;
        if (shown === state.shown) continue;
        state.shown = shown;
        if (shown) for (const listener of state.listeners) listener();
      }
    }, { rootMargin: MARGIN });
  }
  // Until the observer's first answer (the next frame), assume it shows: a page that
  // opens draws what it has.
  const state = { shown: true, listeners: [] };
  watched.set(el, state);
  observer.observe(el);
  return state;
}

/**
 * Follow whether `el` can be seen.
 * @param {Element} el
 * @param {() => void} [onShown]  called each time it comes into view
 * @returns {() => boolean} whether it can be seen now
 */
export function watchShown(el, onShown) {
  const state = watched.get(el) || observe(el);
  if (onShown) state.listeners.push(onShown);
  return () => state.shown;
}

// ----- panels drawn only when they can be seen -----

// Panels waiting to be drawn because their section is hidden (a phone shows one at a
// time): drawn when a section is shown (sections.js says so).
const waiting = new Set();
document.addEventListener(PAGE_EVENTS.sectionShown, () => {
  for (const run of [...waiting]) run();
});

/**
 * A request to draw panel `el` (`task`), at most once per animation frame, and only
 * while the panel can be seen; a request made while it cannot is kept and honoured when
 * it shows.
 * @param {Element} el
 * @param {() => void} task
 * @param {object} [options]
 * @param {boolean} [options.offscreen]  also wait while it is scrolled out of view (for
 *   panels that draw often, like the charts); without it only a hidden section waits
 *   (panels that draw once a second or once an epoch)
 */
export function shownTask(el, task, { offscreen = false } = {}) {
  let wanted = false;
  const canBeSeen = offscreen ? watchShown(el, () => { if (wanted) run(); })
    : () => el.checkVisibility();
  const run = frameTask(() => {
    if (!wanted) return;
    if (!canBeSeen()) {
      waiting.add(request);
      return;
    }
    waiting.delete(request);
    wanted = false;
    task();
  });
  function request() {
    wanted = true;
    run();
  }
  return request;
}
