// The gallery of the person's drawings (issue 15), a <details> under the pad: the counts
// per digit come with the page (GET /api/drawings?limit=1); the drawings themselves
// (their 28x28 images) only when it is opened, grouped by digit, and are kept up to
// date by this page's own changes after that. Each can be relabelled or deleted; all of
// them exported (.npz, IDX) and imported. Teach now's availability follows the counts
// (`onCounts`).

import { api, ApiError } from './api.js';
import { isUnavailable, newButton, setUnavailable } from './buttons.js';
import { inkColour, paintDigit, SIDE } from './digits.js';
import { formatInteger, formatPercent } from './format.js';
import { describeFailure, plural, showStatus } from './drawings-text.js';

const PAGE = 1000;         // drawings shown at most (the server's largest page)
const RELABEL_WAIT_MS = 600;  // a select changed with the arrow keys: the last value counts

/** The 28x28 image rows (0..255) as the 784 bytes paintDigit takes. */
function imageBytes(rows) {
  const bytes = new Uint8Array(SIDE * SIDE);
  if (!Array.isArray(rows)) return bytes;
  rows.slice(0, SIDE).forEach((row, y) => {
    if (Array.isArray(row)) row.slice(0, SIDE).forEach((v, x) => { bytes[y * SIDE + x] = v; });
  });
  return bytes;
}

function describeTile(d) {
  const read = Number.isInteger(d.answer)
    ? `, read as ${d.answer}${Number.isFinite(d.probability) ? ` (${formatPercent(d.probability, 0)})` : ''} when saved`
    : '';
  return `Drawing ${d.id}: a ${d.label}${read}${d.held_out ? ', held out (only measured)' : ''}`;
}

/** A drawing's tile: its image, "held out", its label to change and Delete. */
function tileElement(d, { onRelabel, onDelete }) {
  const li = document.createElement('li');
  li.className = 'drawing-tile';
  li.dataset.id = String(d.id);
  const canvas = document.createElement('canvas');
  canvas.className = 'drawing-canvas';
  canvas.setAttribute('role', 'img');
  paintDigit(canvas, imageBytes(d.image), inkColour());
  const select = document.createElement('select');
  select.className = 'drawing-relabel';
  select.setAttribute('aria-label', `Label of drawing ${d.id}`);
  select.title = 'Relabel: the digit it is';
  for (let digit = 0; digit < 10; digit++) select.add(new Option(String(digit), String(digit)));
  const remove = newButton('button drawing-delete', '✕', `Delete drawing ${d.id}`);
  const actions = document.createElement('div');
  actions.className = 'drawing-actions';
  actions.append(select, remove);
  const mark = document.createElement('span');
  mark.className = 'drawing-held-out';
  mark.textContent = 'held out';
  mark.setAttribute('aria-hidden', 'true');
  li.append(canvas, mark, actions);
  select.addEventListener('change', () => onRelabel(Number(select.value)));
  remove.addEventListener('click', () => {
    if (!isUnavailable(remove)) onDelete();
  });
  return li;
}

/** A digit's group: its title and its list of tiles. */
function groupElement(label) {
  const section = document.createElement('section');
  section.className = 'drawings-group';
  section.dataset.label = String(label);
  const title = document.createElement('h3');
  title.className = 'drawings-group-title';
  title.id = `drawings-group-${label}`;
  section.setAttribute('aria-labelledby', title.id);
  const list = document.createElement('ul');
  list.className = 'drawings-grid';
  section.append(title, list);
  return { section, title, list };
}

/**
 * @param {object} options
 * @param {object} options.elements  details, count, counts, grid, status
 * @param {(total: number, minDrawings: number) => void} options.onCounts  the counts changed
 */
export function createGallery({ elements: gallery, onCounts }) {
  let total = 0;
  let counts = Array(10).fill(0);
  let minDrawings = 10;
  const drawings = new Map();   // id -> summary (with its image), once the gallery loaded
  let loaded = false;           // the gallery has its drawings
  let loading = null;
  let version = 0;              // bumped at every change shown (the tests' hook)

  function applyListing(listing) {
    total = Number.isInteger(listing?.total) ? listing.total : 0;
    counts = Array.from({ length: 10 }, (_, d) => Number(listing?.counts?.[d]) || 0);
    if (Number.isInteger(listing?.min_drawings)) minDrawings = listing.min_drawings;
  }

  /** The counts only (the page opens: no images). */
  async function refreshCounts() {
    try {
      applyListing(await api('GET', '/api/drawings?limit=1'));
      showCounts();
    } catch (error) {
      console.warn('cnn-live: could not count the drawings', error);
    }
  }

  /** Every drawing (up to PAGE), with its image: the gallery is shown. */
  function load() {
    if (!loading) {
      loading = (async () => {
        gallery.grid.setAttribute('aria-busy', 'true');
        try {
          const listing = await api('GET', `/api/drawings?limit=${PAGE}`);
          applyListing(listing);
          drawings.clear();
          for (const d of Array.isArray(listing?.drawings) ? listing.drawings : []) drawings.set(d.id, d);
          loaded = true;
          render();
        } catch (error) {
          showStatus(gallery.status, describeFailure(error, 'load your drawings'), true);
        } finally {
          gallery.grid.removeAttribute('aria-busy');
          loading = null;
        }
      })();
    }
    return loading;
  }

  function added(saved) {
    total += 1;
    counts[saved.label] += 1;
    if (loaded) drawings.set(saved.id, saved);
    render();
  }

  function showCounts() {
    gallery.count.textContent = total ? `· ${formatInteger(total)}` : '· none yet';
    gallery.counts.querySelectorAll('li[data-label]').forEach((li) => {
      const n = counts[Number(li.dataset.label)];
      li.querySelector('.drawings-counts-value').textContent = formatInteger(n);
      li.classList.toggle('is-zero', n === 0);
      li.title = `${plural(n, 'drawing')} of a ${li.dataset.label}`;
    });
    onCounts(total, minDrawings);
  }

  const tiles = new Map();      // id -> its <li>
  const groups = new Map();     // digit -> {section, title, list}

  function tile(d) {
    let li = tiles.get(d.id);
    if (!li) {
      li = tileElement(d, {
        onRelabel: (label) => relabelSoon(d.id, label),
        onDelete: () => removeDrawing(d.id),
      });
      tiles.set(d.id, li);
    }
    li.dataset.label = String(d.label);
    li.classList.toggle('is-held-out', Boolean(d.held_out));
    li.classList.toggle('is-misread', Number.isInteger(d.answer) && d.answer !== d.label);
    li.querySelector('.drawing-held-out').hidden = !d.held_out;
    li.querySelector('canvas').setAttribute('aria-label', describeTile(d));
    li.title = describeTile(d);
    const select = li.querySelector('select');
    if (document.activeElement !== select || !relabelTimers.has(d.id)) select.value = String(d.label);
    return li;
  }

  function render() {
    showCounts();
    version += 1;
    if (!loaded) return;
    const focused = document.activeElement;
    const byLabel = Array.from({ length: 10 }, () => []);
    for (const d of [...drawings.values()].sort((a, b) => a.id - b.id)) byLabel[d.label].push(d);
    for (const [id, li] of tiles) {
      if (!drawings.has(id)) {
        li.remove();
        tiles.delete(id);
      }
    }
    const sections = [];
    byLabel.forEach((list, label) => {
      if (!list.length) {
        groups.get(label)?.section.remove();
        return;
      }
      if (!groups.has(label)) groups.set(label, groupElement(label));
      const g = groups.get(label);
      const held = list.filter((d) => d.held_out).length;
      g.title.textContent = `${label} · ${plural(list.length, 'drawing')}${held ? ` (${formatInteger(held)} held out)` : ''}`;
      const items = list.map(tile);
      // Only what moved is moved (a moved element loses the keyboard's focus).
      items.forEach((li, i) => {
        if (g.list.children[i] !== li) g.list.insertBefore(li, g.list.children[i] || null);
      });
      while (g.list.children.length > items.length) g.list.lastElementChild.remove();
      sections.push(g.section);
    });
    const current = [...gallery.grid.children];
    if (sections.length !== current.length || sections.some((s, i) => s !== current[i])) {
      gallery.grid.replaceChildren(...sections);
    }
    if (!sections.length) {
      const p = document.createElement('p');
      p.className = 'draw-empty';
      p.textContent = 'No drawings yet: draw a digit, then say which it is.';
      gallery.grid.replaceChildren(p);
    }
    const shown = drawings.size;
    if (shown < total) {
      showStatus(gallery.status, `The first ${formatInteger(shown)} of ${formatInteger(total)} drawings are shown.`);
    }
    if (focused && focused !== document.activeElement && focused.isConnected) focused.focus();
  }

  // ----- relabel, delete -----
  const relabelTimers = new Map();

  function relabelSoon(id, label) {
    clearTimeout(relabelTimers.get(id));
    relabelTimers.set(id, setTimeout(() => {
      relabelTimers.delete(id);
      relabel(id, label);
    }, RELABEL_WAIT_MS));
  }

  async function relabel(id, label) {
    const before = drawings.get(id);
    if (!before || before.label === label) return;
    try {
      const changed = await api('PATCH', `/api/drawings/${id}`, { label });
      counts[before.label] -= 1;
      counts[changed.label] += 1;
      drawings.set(id, changed);
      showStatus(gallery.status, `Drawing ${id} is now a ${changed.label} (it was a ${before.label}).`);
    } catch (error) {
      showStatus(gallery.status, describeFailure(error, `relabel drawing ${id}`), true);
      if (error instanceof ApiError && error.status === 404) forget(id);
    }
    render();   // the tile moves to its digit's group, the focus with it
  }

  async function removeDrawing(id) {
    const li = tiles.get(id);
    const button = li?.querySelector('.drawing-delete');
    setUnavailable(button, true);
    // The focus goes to the next drawing's delete button (or the one before, or the gallery).
    const all = [...gallery.grid.querySelectorAll('.drawing-delete')];
    const at = all.indexOf(button);
    const next = all[at + 1] || all[at - 1] || null;
    try {
      await api('DELETE', `/api/drawings/${id}`);
      const gone = drawings.get(id);
      forget(id);
      showStatus(gallery.status, `Deleted drawing ${id}${gone ? ` (a ${gone.label})` : ''}.`);
      (next && next.isConnected ? next : gallery.grid).focus();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) forget(id);
      else setUnavailable(button, false);
      showStatus(gallery.status, describeFailure(error, `delete drawing ${id}`), true);
    }
  }

  function forget(id) {
    const d = drawings.get(id);
    if (d) {
      drawings.delete(id);
      total = Math.max(0, total - 1);
      counts[d.label] = Math.max(0, counts[d.label] - 1);
    }
    render();
  }

  // Opened: the drawings as they are now (another browser may have added some).
  gallery.details.addEventListener('toggle', () => {
    if (gallery.details.open) load();
  });

  refreshCounts();

  return {
    /** A drawing was saved (from the labelling offer). */
    added,
    /** The store changed elsewhere (an import): the counts, and the drawings if shown. */
    async reload() {
      if (loaded || gallery.details.open) await load();
      else await refreshCounts();
    },
    total: () => total,
    /** Colours come from CSS: repaint after a light/dark switch. */
    restyle() {
      const ink = inkColour();
      for (const [id, li] of tiles) {
        const d = drawings.get(id);
        if (d) paintDigit(li.querySelector('canvas'), imageBytes(d.image), ink);
      }
    },
    /** For the tests: what is shown. */
    state: () => ({ version, total, counts: [...counts], shown: loaded ? drawings.size : null }),
  };
}
