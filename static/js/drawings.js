// Your own handwriting (issue 15): a drawing the pad answered is labelled and kept on
// the server (POST /api/drawings), the saved ones are shown by digit, relabelled,
// deleted, exported and imported, and "Teach now" fine-tunes the model that answers on
// them (POST /api/drawings/teach), then says what it read before and after.
//
// - The offer under the pad: "Right: it is a 4" and "It is a 0..9" (ten buttons, one
//   press saves). A saved drawing clears the pad for the next one; the offer stays, its
//   buttons unavailable until the next answer, so the keyboard's focus is never lost.
// - The gallery (a <details> under the pad): the counts per digit come with the page
//   (GET /api/drawings?limit=1); the drawings themselves (their 28x28 images) only
//   when it is opened, and are kept up to date by this page's own changes after that.
// - Teach now: available from the server's min_drawings on. Its run is a run like any
//   other (on the charts, followed by the panels); main.js hands this module its epoch
//   and its end, whose figures are the "after" (the answer to POST gives "before", also
//   drawn on the charts at epoch 0: the teaching run's lines go from before to after).

import { api, ApiError, getToken } from './api.js';
import { isUnavailable, setUnavailable } from './buttons.js';
import { inkColour, paintDigit, SIDE } from './digits.js';
import { saveBlob } from './export.js';
import { describeModel } from './draw.js';
import { formatInteger, formatPercent } from './format.js';

const PAGE = 1000;         // drawings shown at most (the server's largest page)
const RELABEL_WAIT_MS = 600;  // a select changed with the arrow keys: the last value counts

const plural = (n, one, many = `${one}s`) => `${formatInteger(n)} ${n === 1 ? one : many}`;

/** A friendly sentence for a refused request, with the server's own message. */
export function describeFailure(error, what) {
  if (!(error instanceof ApiError)) return `Could not ${what}.`;
  if (error.status === 0) return `Could not ${what}: the server cannot be reached.`;
  if (error.status === 401) return `Could not ${what}: this server needs its token for that.`;
  return `Could not ${what}: ${error.message || `the server answered ${error.status}.`}`;
}

/** "3 of 4 (75%)", or "none held out" without any. */
export function describeScore(score) {
  if (!score || !Number.isInteger(score.total)) return '–';
  if (!score.total) return 'none held out';
  return `${formatInteger(score.correct)} of ${formatInteger(score.total)} (${formatPercent(score.correct / score.total, 0)})`;
}

/** The 28x28 image rows (0..255) as the 784 bytes paintDigit takes. */
function imageBytes(rows) {
  const bytes = new Uint8Array(SIDE * SIDE);
  if (!Array.isArray(rows)) return bytes;
  rows.slice(0, SIDE).forEach((row, y) => {
    if (Array.isArray(row)) row.slice(0, SIDE).forEach((v, x) => { bytes[y * SIDE + x] = v; });
  });
  return bytes;
}

/**
 * @param {object} options
 * @param {(runId: string) => void} [options.onTaught]  a teaching run started
 * @param {(record: object) => void} [options.onBefore]  the teaching run's figures before
 *   it trained, as an epoch 0 record (for the charts: its lines start from them)
 */
export function createDrawings({ offer, gallery, teach, draw, onTaught = null, onBefore = null,
  nameOf = null }) {
  // ----- what this page knows of the store -----
  let total = 0;
  let counts = Array(10).fill(0);
  let minDrawings = 10;
  const drawings = new Map();   // id -> summary (with its image), once the gallery loaded
  let loaded = false;           // the gallery has its drawings
  let loading = null;
  let version = 0;              // bumped at every change shown (the tests' hook)

  // ----- labelling the pad's drawing -----
  const digitButtons = [...offer.el.querySelectorAll('button[data-label]')];
  const offerButtons = [offer.right, ...digitButtons];
  let answer = null;            // the pad's latest answer
  let saving = false;
  let keepOffer = false;        // the pad is being cleared after a save

  function offerAvailable() {
    const can = Boolean(answer) && !saving;
    for (const button of offerButtons) setUnavailable(button, !can);
    if (saving) offer.el.setAttribute('aria-busy', 'true');
    else offer.el.removeAttribute('aria-busy');
  }

  function showStatus(el, text, error = false) {
    el.textContent = text;
    el.classList.toggle('is-error', error);
  }

  async function save(label) {
    if (!answer || saving) return;
    const body = draw.drawing();
    if (!body) return;
    saving = true;
    offerAvailable();
    showStatus(offer.status, `Saving as a ${label}…`);
    try {
      const saved = await api('POST', '/api/drawings', { ...body, label });
      added(saved);
      showStatus(offer.status, `Saved as a ${saved.label} · ${plural(total, 'drawing')}`
        + `${saved.held_out ? ' (this one is held out)' : ''}. Draw the next one.`);
      keepOffer = true;
      draw.clear();
    } catch (error) {
      showStatus(offer.status, describeFailure(error, 'save the drawing'), true);
    } finally {
      keepOffer = false;
      saving = false;
      offerAvailable();
    }
  }

  offer.right.addEventListener('click', () => {
    if (!isUnavailable(offer.right) && answer) save(answer.digit);
  });
  for (const button of digitButtons) {
    button.addEventListener('click', () => {
      if (!isUnavailable(button)) save(Number(button.dataset.label));
    });
  }

  // ----- the counts, the gallery -----
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
    showTeachButton();
  }

  const tiles = new Map();      // id -> its <li>
  const groups = new Map();     // digit -> {section, title, list}

  function group(label) {
    let g = groups.get(label);
    if (!g) {
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
      g = { section, title, list };
      groups.set(label, g);
    }
    return g;
  }

  function describeTile(d) {
    const read = Number.isInteger(d.answer)
      ? `, read as ${d.answer}${Number.isFinite(d.probability) ? ` (${formatPercent(d.probability, 0)})` : ''} when saved`
      : '';
    return `Drawing ${d.id}: a ${d.label}${read}${d.held_out ? ', held out (only measured)' : ''}`;
  }

  function tile(d) {
    let li = tiles.get(d.id);
    if (!li) {
      li = document.createElement('li');
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
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'button drawing-delete';
      remove.setAttribute('aria-label', `Delete drawing ${d.id}`);
      remove.title = 'Delete this drawing';
      remove.textContent = '✕';
      const actions = document.createElement('div');
      actions.className = 'drawing-actions';
      actions.append(select, remove);
      const mark = document.createElement('span');
      mark.className = 'drawing-held-out';
      mark.textContent = 'held out';
      mark.setAttribute('aria-hidden', 'true');
      li.append(canvas, mark, actions);
      select.addEventListener('change', () => relabelSoon(d.id, Number(select.value)));
      remove.addEventListener('click', () => {
        if (!isUnavailable(remove)) removeDrawing(d.id);
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
      const g = group(label);
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

  // ----- export, import -----
  // The links work as they are; with a token (which a link cannot send) the file is
  // fetched with it and saved from a Blob.
  for (const link of gallery.exports) {
    link.addEventListener('click', async (event) => {
      if (!getToken()) return;
      event.preventDefault();
      try {
        saveBlob(await api('GET', link.getAttribute('href'), undefined, { blob: true }),
          link.getAttribute('download') || 'drawings');
      } catch (error) {
        showStatus(gallery.status, describeFailure(error, 'export the drawings'), true);
      }
    });
  }

  gallery.importInput.addEventListener('change', async () => {
    const file = gallery.importInput.files?.[0];
    if (!file) return;
    showStatus(gallery.status, `Importing ${file.name}…`);
    try {
      const answer = await api('POST', '/api/drawings/import', file);
      showStatus(gallery.status, `Imported ${plural(answer.imported, 'drawing')} from ${file.name}.`);
      if (loaded || gallery.details.open) await load();
      else await refreshCounts();
    } catch (error) {
      showStatus(gallery.status, describeFailure(error, `import ${file.name}`), true);
    } finally {
      gallery.importInput.value = '';
    }
  });

  // Opened: the drawings as they are now (another browser may have added some).
  gallery.details.addEventListener('toggle', () => {
    if (gallery.details.open) load();
  });

  // ----- Teach now -----
  let taught = null;   // {runId, state, before, beforeTest, after, message}

  function teachingNow() {
    return Boolean(taught) && ['starting', 'queued', 'running', 'paused', 'stopping'].includes(taught.state);
  }

  function showTeachButton() {
    const missing = Math.max(0, minDrawings - total);
    let note;
    if (teachingNow()) note = 'Teaching: the run trains on the charts; its figures come here when it ends.';
    else if (missing) {
      note = `Teach now needs at least ${formatInteger(minDrawings)} labelled drawings: `
        + `${formatInteger(missing)} more to go.`;
    } else {
      note = 'Fine-tunes the model that answers the pad for a few seconds, on your drawings (all but '
        + `the held-out ones) mixed into MNIST images so that it does not forget, live on the charts; `
        + 'it then answers the pad.';
    }
    setUnavailable(teach.button, teachingNow() || missing > 0);
    teach.note.textContent = note;
  }

  function cell(tag, text, scope) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (scope) el.scope = scope;
    return el;
  }

  function showTeach() {
    showTeachButton();
    if (!taught) return;
    const result = teach.result;
    result.hidden = false;
    result.dataset.state = taught.state;
    const line = document.createElement('p');
    line.className = 'teach-state';
    const run = nameOf ? nameOf(taught.runId) : `run ${taught.runId.slice(0, 4)}…`;
    line.textContent = {
      starting: 'Teach now: starting…',
      queued: `Teaching (${run}) waits in the queue for a free worker.`,
      finished: `Taught (${run}): it answers the pad now.`,
      stopped: `Teaching was stopped (${run}): the figures after are of its last epoch.`,
      failed: `Teaching failed (${run}): ${taught.message || 'see the run'}.`,
    }[taught.state] || `Teaching (${run}${taught.from ? `, from ${describeModel(taught.from, nameOf)}` : ''}): live on the charts…`;
    const table = document.createElement('table');
    table.className = 'teach-table';
    table.append(cell('caption', 'Before and after teaching'));
    const head = document.createElement('tr');
    head.append(cell('td', ''), cell('th', 'Before', 'col'), cell('th', 'After', 'col'));
    const after = taught.after;
    const afterDrawings = after && Number.isInteger(after.drawings_total)
      ? describeScore({ correct: after.drawings_correct, total: after.drawings_total }) : '…';
    const afterTest = after && Number.isFinite(after.test_accuracy) ? formatPercent(after.test_accuracy, 2) : '…';
    const rows = [
      ['Your held-out drawings', describeScore(taught.before), afterDrawings, 'drawings'],
      ['MNIST test images', Number.isFinite(taught.beforeTest) ? formatPercent(taught.beforeTest, 2) : '–', afterTest, 'mnist'],
    ].map(([name, before, later, key]) => {
      const tr = document.createElement('tr');
      tr.dataset.row = key;
      tr.append(cell('th', name, 'row'), cell('td', before), cell('td', later));
      return tr;
    });
    const thead = document.createElement('thead');
    thead.append(head);
    const tbody = document.createElement('tbody');
    tbody.append(...rows);
    table.append(thead, tbody);
    result.replaceChildren(line, table);
    version += 1;
  }

  teach.button.addEventListener('click', async () => {
    if (isUnavailable(teach.button)) return;
    taught = { runId: '', state: 'starting', before: null, beforeTest: null, after: null };
    setUnavailable(teach.button, true);
    try {
      const started = await api('POST', '/api/drawings/teach', draw.answeredBy());
      taught = { runId: started.run_id, state: started.state || 'running', before: started.before,
        beforeTest: started.before_test_accuracy, after: null, from: started.taught_from };
      showTeach();
      if (onTaught) onTaught(started.run_id);
    } catch (error) {
      taught = null;
      showTeachButton();
      teach.note.textContent = describeFailure(error, 'teach');
    }
  });

  refreshCounts();

  return {
    /** The pad answered: offer to keep the drawing. */
    answered(a) {
      answer = a;
      offer.digit.textContent = `: it is a ${a.digit}`;
      offer.el.hidden = false;
      offerAvailable();
    },
    /** The pad was cleared: nothing to label (the offer stays after a save). */
    cleared() {
      answer = null;
      offer.digit.textContent = '';
      if (!keepOffer) offer.el.hidden = true;
      offerAvailable();
    },
    /** An epoch of any run (the teaching run's is its "after"). */
    runEpoch(record) {
      if (!taught || record.run_id !== taught.runId) return;
      // Its run's start (the "run" event) has come by now: the charts keep this point.
      if (!taught.after && onBefore && taught.before) {
        onBefore({ run_id: taught.runId, epoch: 0, test_accuracy: taught.beforeTest,
          drawings_correct: taught.before.correct, drawings_total: taught.before.total,
          drawings_accuracy: taught.before.accuracy });
      }
      taught.after = record;
      if (taught.state === 'queued') taught.state = 'running';
      showTeach();
    },
    /** A run ended ("done": finished or stopped; "error": failed). */
    runEnded(event, failed = false) {
      if (!taught || event.run_id !== taught.runId) return;
      taught.state = failed ? 'failed' : (event.state === 'stopped' ? 'stopped' : 'finished');
      taught.message = event.message;
      showTeach();
    },
    /** Colours come from CSS: repaint after a light/dark switch. */
    restyle() {
      const ink = inkColour();
      for (const [id, li] of tiles) {
        const d = drawings.get(id);
        if (d) paintDigit(li.querySelector('canvas'), imageBytes(d.image), ink);
      }
    },
    /** For the tests: what is shown. */
    state: () => ({
      version,
      total,
      counts: [...counts],
      shown: loaded ? drawings.size : null,
      offer: !offer.el.hidden && Boolean(answer),
      teach: taught ? { runId: taught.runId, state: taught.state, after: Boolean(taught.after) } : null,
    }),
  };
}
