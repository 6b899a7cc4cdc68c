// The "Evaluate" card: after every epoch the server sends an `evaluation` event (the
// confusion matrix of the test images, and the most confident mistakes). This draws
//
// - the confusion matrix as a table of buttons, rows = the true digit, columns = the
//   network's answer, each showing its count and shaded by it (right answers on the
//   diagonal in green against their row, mistakes in red against the largest mistake);
// - the images of the cell clicked (GET /api/runs/{id}/confusion), fetched again when
//   a newer evaluation comes, so that they always match the matrix shown;
// - a gallery of the misclassified images the event carries.
//
// Two tabs choose the matrix: the test images', or (issue 15) the person's held-out
// drawings' (`drawings_confusion`, in the events of a run that had 10 labelled drawings
// or more as it started). A cell of the drawings' matrix gives its count; their images
// are in the Draw section's gallery.
//
// Each event holds the whole picture, not a change, so only the newest one is drawn:
// a page that connects mid-run and is replayed the history ends up showing the same
// as one that watched from the start.

import { shownTask } from './visibility.js';
import { cellColours } from './contrast.js';
import { api, ApiError } from './api.js';
import { digitFigure, inkColour, repaintDigits } from './digits.js';
import { cssVar, formatInteger, formatPercent, parseColour } from './format.js';

const CELL_LIMIT = 48;   // images asked for per clicked cell (the server allows 200)

/** Sum of a matrix's cells. */
export function matrixTotal(matrix) {
  let total = 0;
  for (const row of matrix) for (const v of row) total += v;
  return total;
}

/** Shading 0..1 of every cell: a right answer against its row (the share of that digit
 *  read right), a mistake against the largest mistake (square root, so that small
 *  mistakes still show). */
export function cellShades(matrix) {
  let maxWrong = 0;
  matrix.forEach((row, t) => row.forEach((v, p) => {
    if (t !== p && v > maxWrong) maxWrong = v;
  }));
  return matrix.map((row, t) => {
    const rowTotal = row.reduce((a, b) => a + b, 0);
    return row.map((v, p) => {
      if (t === p) return rowTotal ? v / rowTotal : 0;
      return maxWrong ? Math.sqrt(v / maxWrong) : 0;
    });
  });
}

function palette() {
  return {
    right: parseColour(cssVar('--cm-right', '#047857'), [4, 120, 87]),
    wrong: parseColour(cssVar('--cm-wrong', '#b91c1c'), [185, 28, 28]),
    empty: parseColour(cssVar('--surface-sunken', '#f0f2f6'), [240, 242, 246]),
    dark: parseColour(cssVar('--text', '#18202c'), [24, 32, 44]),
    light: parseColour(cssVar('--cm-light-text', '#ffffff'), [255, 255, 255]),
  };
}

function isMatrix(m) {
  return Array.isArray(m) && m.length > 0
    && m.every((row) => Array.isArray(row) && row.length === m.length
      && row.every((v) => Number.isInteger(v) && v >= 0));
}

function describeCell(t, p, count) {
  return `true ${t}, predicted ${p}: ${formatInteger(count)} image${count === 1 ? '' : 's'}`;
}

function describeFailure(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return 'Cannot reach the server.';
    if (error.status === 404) return 'The server no longer has these images (a newer run?).';
    return error.message || `The server answered ${error.status}.`;
  }
  return 'Could not load these images.';
}

const CAPTIONS = {
  test: 'Confusion matrix of the test images: rows are the true digit, columns the digit the network predicted. Press a cell to see its images.',
  drawings: 'Confusion matrix of your held-out drawings: rows are the digit you labelled, columns the digit the network predicted.',
};

export function createEvaluate({
  matrixEl, stampEl, summaryEl, detailEl, detailTitleEl, detailGridEl,
  galleryEl, galleryCountEl, tabs = null,
}) {
  const emptyMatrixText = matrixEl.textContent.trim() || 'The confusion matrix appears after the first epoch.';
  const emptyGalleryText = galleryEl.textContent.trim() || 'The mistakes appear after the first epoch.';
  let pending = null;      // the newest event not yet drawn
  let shown = null;        // the event drawn
  let size = 0;            // classes of the table built
  let buttons = [];        // [true][predicted] -> <button>
  let rowNotes = [];       // per row: the share read right
  let selected = null;     // {label, predicted} of the open cell
  let detailItems = [];    // its images, for a repaint
  let detailKey = '';      // run:epoch:label:predicted of the images shown
  let detailCount = 0;     // the cell's count as the server gave it
  let loading = false;
  let reloadWanted = false;
  let generation = 0;      // bumped by reset: answers for an older run are dropped
  let version = 0;
  let view = 'test';       // the tab shown: 'test' (MNIST's test images) or 'drawings'

  function placeholder(el, text, className) {
    const p = document.createElement('p');
    p.className = className;
    p.textContent = text;
    el.replaceChildren(p);
  }

  // ----- the matrix -----
  function build(n) {
    const table = document.createElement('table');
    table.className = 'confusion-table';
    const caption = document.createElement('caption');
    caption.className = 'visually-hidden';
    caption.textContent = CAPTIONS[view];
    const head = document.createElement('thead');
    const headRow = document.createElement('tr');
    const corner = headerCell('col', 'confusion-corner', '', '');
    corner.append(cornerLabel('true', 'predicted'));
    headRow.append(corner);
    for (let p = 0; p < n; p++) headRow.append(headerCell('col', 'confusion-col', String(p), `predicted ${p}`));
    headRow.append(headerCell('col', 'confusion-right-head', 'right', 'the share of this digit read right'));
    head.append(headRow);

    const body = document.createElement('tbody');
    buttons = [];
    rowNotes = [];
    for (let t = 0; t < n; t++) {
      const tr = document.createElement('tr');
      tr.append(headerCell('row', 'confusion-row', String(t), `true ${t}`));
      const row = [];
      for (let p = 0; p < n; p++) {
        const td = document.createElement('td');
        const button = document.createElement('button');
        button.type = 'button';
        button.className = `confusion-cell${t === p ? ' is-diagonal' : ''}`;
        button.dataset.label = String(t);
        button.dataset.predicted = String(p);
        button.setAttribute('aria-pressed', 'false');
        button.tabIndex = t === 0 && p === 0 ? 0 : -1;
        button.addEventListener('click', () => select(t, p));
        button.addEventListener('focus', () => rove(t, p));
        button.addEventListener('keydown', (event) => moveFocus(event, t, p));
        td.append(button);
        tr.append(td);
        row.push(button);
      }
      const note = document.createElement('td');
      note.className = 'confusion-right';
      tr.append(note);
      rowNotes.push(note);
      buttons.push(row);
      body.append(tr);
    }
    table.append(caption, head, body);
    matrixEl.replaceChildren(table);
    size = n;
  }

  function headerCell(scope, className, text, title) {
    const th = document.createElement('th');
    th.scope = scope;
    th.className = className;
    th.textContent = text;
    if (title) th.title = title;
    return th;
  }

  function cornerLabel(rows, cols) {
    const span = document.createElement('span');
    span.className = 'confusion-axes';
    const r = document.createElement('span');
    r.textContent = `${rows} ↓`;
    const c = document.createElement('span');
    c.textContent = `${cols} →`;
    span.append(c, r);
    return span;
  }

  function paintMatrix(matrix) {
    if (matrix.length !== size) build(matrix.length);
    matrixEl.querySelector('caption').textContent = CAPTIONS[view];
    const shades = cellShades(matrix);
    const colours = palette();
    matrix.forEach((row, t) => {
      const rowTotal = row.reduce((a, b) => a + b, 0);
      row.forEach((count, p) => {
        const button = buttons[t][p];
        // The count as its name says it ("1,117", "true 3, predicted 3: 1,117 images").
        button.textContent = formatInteger(count);
        button.dataset.count = String(count);
        button.setAttribute('aria-label', describeCell(t, p, count));
        button.title = describeCell(t, p, count);
        const shade = shades[t][p];
        button.style.setProperty('--heat', shade.toFixed(3));
        const look = cellColours(count === 0 ? 0 : shade, t === p ? colours.right : colours.wrong,
          colours.empty, colours.dark, colours.light);
        button.style.backgroundColor = look.background;
        button.classList.toggle('is-zero', count === 0);
        button.classList.toggle('is-strong', look.color === 'light');
      });
      rowNotes[t].textContent = rowTotal ? formatPercent(row[t] / rowTotal, 0) : '–';
      rowNotes[t].title = rowTotal ? `${formatInteger(row[t])} of ${formatInteger(rowTotal)} ${t}s read right` : '';
    });
    markSelected();
    showScrollHint();
  }

  // A matrix wider than its box (a narrow phone) scrolls sideways, and says so.
  const hint = document.createElement('p');
  hint.className = 'confusion-hint';
  hint.textContent = 'Scroll the matrix sideways to see every column →';
  hint.hidden = true;
  matrixEl.after(hint);
  function showScrollHint() {
    hint.hidden = !(matrixEl.scrollWidth > matrixEl.clientWidth + 1);
  }
  new ResizeObserver(() => showScrollHint()).observe(matrixEl);

  function markSelected() {
    buttons.forEach((row, t) => row.forEach((button, p) => {
      const on = Boolean(selected) && selected.label === t && selected.predicted === p;
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
      button.classList.toggle('is-selected', on);
    }));
  }

  // One tab stop for the whole matrix; the arrow keys move between its cells.
  const STEPS = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  function moveFocus(event, t, p) {
    const step = STEPS[event.key] || (event.key === 'Home' ? [0, -p] : event.key === 'End' ? [0, size - 1 - p] : null);
    if (!step) return;
    event.preventDefault();
    const clamp = (i) => Math.max(0, Math.min(size - 1, i));
    buttons[clamp(t + step[0])][clamp(p + step[1])].focus();
  }

  /** The cell (t, p) becomes the matrix's tab stop. */
  function rove(t, p) {
    buttons.forEach((row) => row.forEach((button) => { button.tabIndex = -1; }));
    buttons[t][p].tabIndex = 0;
  }

  // ----- the images of one cell -----
  function select(label, predicted) {
    if (!shown) return;
    selected = { label, predicted };
    markSelected();
    detailEl.hidden = false;
    if (view === 'drawings') showDrawingsCell();
    else loadCell();
  }

  /** A cell of the drawings' matrix: its count (their images are in the gallery). */
  function showDrawingsCell() {
    const { label, predicted } = selected;
    const count = shown?.drawings_confusion?.[label]?.[predicted] ?? 0;
    detailKey = '';
    detailCount = count;
    detailItems = [];
    detailTitleEl.textContent = `Labelled ${label}, predicted ${predicted}: ${formatInteger(count)} held-out drawing${count === 1 ? '' : 's'}`;
    detailTitleEl.title = '';
    placeholder(detailGridEl, 'Your drawings are in the gallery under “Draw a digit”.', 'evaluate-empty');
  }

  async function loadCell() {
    if (!selected || !shown || view !== 'test') return;
    if (loading) {
      reloadWanted = true;
      return;
    }
    const mine = generation;
    const { run_id: runId, epoch } = shown;
    const { label, predicted } = selected;
    const key = `${runId}:${epoch}:${label}:${predicted}`;
    if (key === detailKey) return;   // already showing this evaluation's images
    loading = true;
    detailEl.setAttribute('aria-busy', 'true');
    detailTitleEl.textContent = `True ${label}, predicted ${predicted}: loading…`;
    try {
      const path = `/api/runs/${encodeURIComponent(runId)}/confusion`
        + `?label=${label}&predicted=${predicted}&limit=${CELL_LIMIT}`;
      const answer = await api('GET', path);
      // The server answers from its latest evaluation, which may be newer than the one shown.
      const answered = Number.isFinite(answer?.epoch) ? `${runId}:${answer.epoch}:${label}:${predicted}` : key;
      if (mine === generation && isSelected(label, predicted) && view === 'test') showCell(answer, answered);
    } catch (error) {
      if (mine === generation && isSelected(label, predicted)) {
        detailKey = '';
        detailTitleEl.textContent = `True ${label}, predicted ${predicted}: ${describeFailure(error)}`;
        detailGridEl.replaceChildren();
        detailItems = [];
      }
    } finally {
      loading = false;
      detailEl.removeAttribute('aria-busy');
      if (reloadWanted && mine === generation) {
        reloadWanted = false;
        loadCell();
      }
    }
  }

  function isSelected(label, predicted) {
    return Boolean(selected) && selected.label === label && selected.predicted === predicted;
  }

  function showCell(answer, key) {
    const images = Array.isArray(answer?.images) ? answer.images : [];
    const count = Number.isInteger(answer?.count) ? answer.count : images.length;
    detailKey = key;
    detailCount = count;
    detailItems = images;
    const { label, predicted } = selected;
    const what = label === predicted ? `${label}s read right` : `${label}s read as ${predicted}`;
    const more = count > images.length ? ` (the ${images.length} most confident shown)` : '';
    const epoch = Number.isFinite(answer?.epoch) ? ` · epoch ${answer.epoch}` : '';
    detailTitleEl.textContent = `True ${label}, predicted ${predicted}: ${formatInteger(count)} image${count === 1 ? '' : 's'}${more}${epoch}`;
    detailTitleEl.title = what;
    const ink = inkColour();
    detailGridEl.replaceChildren(...images.map((item) => digitFigure(item, ink)));
    if (!images.length) {
      placeholder(detailGridEl, 'No test image is in this cell.', 'evaluate-empty');
    }
  }

  // ----- the gallery of mistakes -----
  function paintGallery(event) {
    const items = Array.isArray(event.misclassified) ? event.misclassified : [];
    const wrong = Number.isInteger(event.misclassified_total) ? event.misclassified_total : items.length;
    const total = Number.isInteger(event.test_total) ? event.test_total : null;
    const share = total ? ` (${formatPercent(wrong / total, 2)})` : '';
    const of = total !== null ? ` of ${formatInteger(total)}` : '';
    const showing = items.length && items.length < wrong ? ` · the ${items.length} most confident shown` : '';
    galleryCountEl.textContent = `${formatInteger(wrong)}${of} test images misclassified${share}${showing}`;
    galleryCountEl.dataset.count = String(wrong);
    const ink = inkColour();
    if (items.length) galleryEl.replaceChildren(...items.map((item) => digitFigure(item, ink)));
    else placeholder(galleryEl, wrong ? 'No images were sent.' : 'No mistakes: every test image was read right.', 'evaluate-empty');
  }

  // ----- drawing the newest event -----
  /** The matrix of the tab shown, or null (no drawings measured in this run). */
  function matrixOf(event) {
    if (view === 'test') return event.confusion;
    return isMatrix(event.drawings_confusion) ? event.drawings_confusion : null;
  }

  function paintView(event) {
    const matrix = matrixOf(event);
    if (!matrix) {
      size = 0;
      buttons = [];
      rowNotes = [];
      placeholder(matrixEl, 'This run was not measured on your drawings: it started with fewer than 10 '
        + 'labelled drawings. Label drawings under “Draw a digit”, then start a run or Teach now.', 'evaluate-empty');
      summaryEl.textContent = '';
      detailEl.hidden = true;
      showScrollHint();
      return;
    }
    paintMatrix(matrix);
    const total = matrixTotal(matrix);
    const right = matrix.reduce((sum, row, t) => sum + row[t], 0);
    const what = view === 'test' ? 'test images' : 'held-out drawings';
    summaryEl.textContent = `${formatInteger(right)} of ${formatInteger(total)} ${what} read right (${formatPercent(total ? right / total : NaN, view === 'test' ? 2 : 0)})`;
    if (selected) {
      if (view === 'drawings') showDrawingsCell();
      else loadCell();
    }
  }

  function draw() {
    const event = pending;
    pending = null;
    if (!event) return;
    shown = event;
    paintView(event);
    if (stampEl) stampEl.textContent = Number.isFinite(event.epoch) ? `epoch ${event.epoch}` : '';
    paintGallery(event);
    version += 1;
  }

  // ----- the tabs: which matrix -----
  const tabButtons = tabs ? [tabs.test, tabs.drawings] : [];
  function choose(name) {
    if (name === view) return;
    view = name;
    tabButtons.forEach((tab) => {
      const on = tab.dataset.view === view;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      if (on) matrixEl.setAttribute('aria-labelledby', tab.id);
    });
    selected = null;
    detailKey = '';
    detailItems = [];
    detailEl.hidden = true;
    if (shown) {
      paintView(shown);
      version += 1;
    }
  }
  if (tabs) {
    tabs.test.dataset.view = 'test';
    tabs.drawings.dataset.view = 'drawings';
    tabButtons.forEach((tab, i) => {
      tab.addEventListener('click', () => choose(tab.dataset.view));
      tab.addEventListener('keydown', (event) => {
        const to = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: tabButtons.length - 1 }[event.key];
        if (to === undefined) return;
        event.preventDefault();
        const next = tabButtons[(to + tabButtons.length) % tabButtons.length];
        choose(next.dataset.view);
        next.focus();
      });
    });
  }

  // Drawn only while its section shows (a phone shows one at a time).
  const request = shownTask(matrixEl, draw);

  return {
    /** A new run: nothing to show until its first evaluation (`text` says why). */
    reset(text = '') {
      generation += 1;
      pending = null;
      shown = null;
      selected = null;
      detailItems = [];
      detailKey = '';
      detailCount = 0;
      reloadWanted = false;
      size = 0;
      buttons = [];
      rowNotes = [];
      placeholder(matrixEl, text || emptyMatrixText, 'evaluate-empty');
      placeholder(galleryEl, text ? '' : emptyGalleryText, 'evaluate-empty');
      summaryEl.textContent = '';
      galleryCountEl.textContent = '';
      delete galleryCountEl.dataset.count;
      if (stampEl) stampEl.textContent = '';
      detailEl.hidden = true;
      detailTitleEl.textContent = '';
      detailGridEl.replaceChildren();
    },
    /** An `evaluation` event (of the run shown). */
    update(event) {
      if (!event || !isMatrix(event.confusion)) return;
      pending = event;
      request();
    },
    restyle() {
      const matrix = shown ? matrixOf(shown) : null;
      if (matrix) paintMatrix(matrix);
      const ink = inkColour();
      if (shown) repaintDigits(galleryEl, shown.misclassified || [], ink);
      repaintDigits(detailGridEl, detailItems, ink);
    },
    /** For the tests: what is drawn. */
    state: () => ({
      version,
      runId: shown?.run_id ?? null,
      epoch: shown?.epoch ?? null,
      total: shown ? matrixTotal(shown.confusion) : 0,
      view,
      drawingsTotal: isMatrix(shown?.drawings_confusion) ? matrixTotal(shown.drawings_confusion) : null,
      selected: selected ? { ...selected, count: detailCount, shown: detailItems.length, loaded: detailKey !== '' && !loading } : null,
    }),
  };
}
