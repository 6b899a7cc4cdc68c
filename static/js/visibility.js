// Whether a panel can be seen: on screen (or nearly) and not in a hidden section (an
// element in a section that is not displayed never intersects the viewport, so one
// IntersectionObserver answers both). A panel that cannot be seen keeps its data but
// does not draw; it is brought up to date when it comes into view. On a phone
// throttled 4x, drawing charts and tiles nobody sees was most of the main thread's
// time while a run trained (issue 13).

import { PAGE_EVENTS } from './events.js';
import { pacedTask } from './format.js';
import { backlog } from './stream.js';

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

/**
 * A request to draw panel `el` (`task`): run only while the panel can be seen (on
 * screen or nearly, in a section that shows), at most every `interval` ms and never
 * more than about 15% of the time (format.js pacedTask), and not while the stream still
 * applies a replayed history (a late page draws what the history ends with, once). A
 * request made while the panel cannot be seen is kept and honoured when it shows.
 * @param {Element} el
 * @param {() => void} task
 * @param {object} [options]
 * @param {number} [options.interval]  ms between two runs at least
 */
export function shownTask(el, task, { interval = 0 } = {}) {
  let wanted = false;
  const canBeSeen = watchShown(el, () => { if (wanted) run(true); });
  const run = pacedTask(() => {
    if (!wanted || !canBeSeen()) return;
    wanted = false;
    task();
  }, { interval, settled: () => backlog() === 0 });
  return function request() {
    wanted = true;
    run();
  };
}

// ----- work done only once its section shows -----

const waitingForSection = new Set();
document.addEventListener(PAGE_EVENTS.sectionShown, () => {
  for (const run of [...waitingForSection]) run();
});

/**
 * A request to do `task` for `el` now if `el` is displayed (not in a hidden section:
 * a phone shows one at a time), else when its section shows. For panels that fetch
 * something to draw once, off-screen or not (the augmentation preview).
 * @param {Element} el
 * @param {() => void} task
 */
export function displayedTask(el, task) {
  function run() {
    if (!el.checkVisibility()) {
      waitingForSection.add(run);
      return;
    }
    waitingForSection.delete(run);
    task();
  }
  return run;
}
