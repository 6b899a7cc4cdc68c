// The "Evaluate" card: after every epoch the server sends an `evaluation` event (the
// confusion matrix of the test images, and the most confident mistakes). This module
// draws the newest one, put together from
//
// - the confusion matrix (confusion-table.js), with the tabs that choose which;
// - the images of the cell pressed (confusion-cell.js);
// - the gallery of the misclassified images the event carries (mistakes.js).
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
import { formatInteger, formatPercent } from './format.js';
import { createCellImages } from './confusion-cell.js';
import { createConfusionTable, matrixTotal } from './confusion-table.js';
import { createMistakes } from './mistakes.js';

function isMatrix(m) {
  return Array.isArray(m) && m.length > 0
    && m.every((row) => Array.isArray(row) && row.length === m.length
      && row.every((v) => Number.isInteger(v) && v >= 0));
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
  let pending = null;      // the newest event not yet drawn
  let shown = null;        // the event drawn
  let version = 0;
  let view = 'test';       // the tab shown: 'test' (MNIST's test images) or 'drawings'

  const cell = createCellImages({
    elements: { detail: detailEl, title: detailTitleEl, grid: detailGridEl },
    shown: () => shown,
    view: () => view,
  });
  const table = createConfusionTable({
    matrixEl,
    onSelect: (label, predicted) => {
      if (!shown) return;
      cell.select(label, predicted);
      table.markSelected(cell.selected());
    },
  });
  const mistakes = createMistakes({ galleryEl, countEl: galleryCountEl });

  /** The matrix of the tab shown, or null (no drawings measured in this run). */
  function matrixOf(event) {
    if (view === 'test') return event.confusion;
    return isMatrix(event.drawings_confusion) ? event.drawings_confusion : null;
  }

  function paintView(event) {
    const matrix = matrixOf(event);
    if (!matrix) {
      table.clear('This run was not measured on your drawings: it started with fewer than 10 '
        + 'labelled drawings. Label drawings under “Draw a digit”, then start a run or Teach now.');
      summaryEl.textContent = '';
      cell.hide();
      return;
    }
    table.paint(matrix, CAPTIONS[view], cell.selected());
    const total = matrixTotal(matrix);
    const right = matrix.reduce((sum, row, t) => sum + row[t], 0);
    const what = view === 'test' ? 'test images' : 'held-out drawings';
    summaryEl.textContent = `${formatInteger(right)} of ${formatInteger(total)} ${what} read right (${formatPercent(total ? right / total : NaN, view === 'test' ? 2 : 0)})`;
    cell.refresh();
  }

  function draw() {
    const event = pending;
    pending = null;
    if (!event) return;
    shown = event;
    paintView(event);
    if (stampEl) stampEl.textContent = Number.isFinite(event.epoch) ? `epoch ${event.epoch}` : '';
    mistakes.show(event);
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
    cell.close();
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
      pending = null;
      shown = null;
      cell.reset();
      table.clear(text || emptyMatrixText);
      mistakes.reset(text);
      summaryEl.textContent = '';
      if (stampEl) stampEl.textContent = '';
    },
    /** An `evaluation` event (of the run shown). */
    update(event) {
      if (!event || !isMatrix(event.confusion)) return;
      pending = event;
      request();
    },
    restyle() {
      const matrix = shown ? matrixOf(shown) : null;
      if (matrix) table.paint(matrix, CAPTIONS[view], cell.selected());
      mistakes.restyle();
      cell.restyle();
    },
    /** For the tests: what is drawn. */
    state: () => ({
      version,
      runId: shown?.run_id ?? null,
      epoch: shown?.epoch ?? null,
      total: shown ? matrixTotal(shown.confusion) : 0,
      view,
      drawingsTotal: isMatrix(shown?.drawings_confusion) ? matrixTotal(shown.drawings_confusion) : null,
      selected: cell.state(),
    }),
  };
}
