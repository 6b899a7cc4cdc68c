// The images of the confusion matrix's pressed cell, under it: for the test images'
// matrix, asked for (GET /api/runs/{id}/confusion) and asked again when a newer
// evaluation comes, so that they always match the matrix shown; for the person's
// drawings' matrix, the cell's count (their images are in the Draw section's gallery).
// An answer for an older run (`reset`) or another cell is dropped.

import { api, ApiError } from './api.js';
import { digitFigure, inkColour, repaintDigits } from './digits.js';
import { formatInteger, placeholder } from './format.js';

const CELL_LIMIT = 48;   // images asked for per pressed cell (the server allows 200)

function describeFailure(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return 'Cannot reach the server.';
    if (error.status === 404) return 'The server no longer has these images (a newer run?).';
    return error.message || `The server answered ${error.status}.`;
  }
  return 'Could not load these images.';
}

/**
 * @param {object} options
 * @param {object} options.elements  detail (the box), title, grid
 * @param {() => object | null} options.shown  the evaluation event the matrix shows
 * @param {() => string} options.view  the matrix shown: 'test' or 'drawings'
 */
export function createCellImages({ elements: el, shown, view }) {
  let selected = null;     // {label, predicted} of the open cell
  let items = [];          // its images, for a repaint
  let key = '';            // run:epoch:label:predicted of the images shown
  let count = 0;           // the cell's count as the server gave it
  let loading = false;
  let reloadWanted = false;
  let generation = 0;      // bumped by reset: answers for an older run are dropped

  const isSelected = (label, predicted) => Boolean(selected) && selected.label === label
    && selected.predicted === predicted;

  /** A cell of the drawings' matrix: its count (their images are in the gallery). */
  function showDrawingsCell() {
    const { label, predicted } = selected;
    const n = shown()?.drawings_confusion?.[label]?.[predicted] ?? 0;
    key = '';
    count = n;
    items = [];
    el.title.textContent = `Labelled ${label}, predicted ${predicted}: ${formatInteger(n)} held-out drawing${n === 1 ? '' : 's'}`;
    el.title.title = '';
    placeholder(el.grid, 'Your drawings are in the gallery under “Draw a digit”.', 'evaluate-empty');
  }

  async function loadCell() {
    const event = shown();
    if (!selected || !event || view() !== 'test') return;
    if (loading) {
      reloadWanted = true;
      return;
    }
    const mine = generation;
    const { run_id: runId, epoch } = event;
    const { label, predicted } = selected;
    const wanted = `${runId}:${epoch}:${label}:${predicted}`;
    if (wanted === key) return;   // already showing this evaluation's images
    loading = true;
    el.detail.setAttribute('aria-busy', 'true');
    el.title.textContent = `True ${label}, predicted ${predicted}: loading…`;
    try {
      const path = `/api/runs/${encodeURIComponent(runId)}/confusion`
        + `?label=${label}&predicted=${predicted}&limit=${CELL_LIMIT}`;
      const answer = await api('GET', path);
      // The server answers from its latest evaluation, which may be newer than the one shown.
      const answered = Number.isFinite(answer?.epoch) ? `${runId}:${answer.epoch}:${label}:${predicted}` : wanted;
      if (mine === generation && isSelected(label, predicted) && view() === 'test') showCell(answer, answered);
    } catch (error) {
      if (mine === generation && isSelected(label, predicted)) {
        key = '';
        el.title.textContent = `True ${label}, predicted ${predicted}: ${describeFailure(error)}`;
        el.grid.replaceChildren();
        items = [];
      }
    } finally {
      loading = false;
      el.detail.removeAttribute('aria-busy');
      if (reloadWanted && mine === generation) {
        reloadWanted = false;
        loadCell();
      }
    }
  }

  function showCell(answer, answeredKey) {
    const images = Array.isArray(answer?.images) ? answer.images : [];
    const n = Number.isInteger(answer?.count) ? answer.count : images.length;
    key = answeredKey;
    count = n;
    items = images;
    const { label, predicted } = selected;
    const what = label === predicted ? `${label}s read right` : `${label}s read as ${predicted}`;
    const more = n > images.length ? ` (the ${images.length} most confident shown)` : '';
    const epoch = Number.isFinite(answer?.epoch) ? ` · epoch ${answer.epoch}` : '';
    el.title.textContent = `True ${label}, predicted ${predicted}: ${formatInteger(n)} image${n === 1 ? '' : 's'}${more}${epoch}`;
    el.title.title = what;
    const ink = inkColour();
    el.grid.replaceChildren(...images.map((item) => digitFigure(item, ink)));
    if (!images.length) {
      placeholder(el.grid, 'No test image is in this cell.', 'evaluate-empty');
    }
  }

  /** Show the open cell of the matrix shown now (a newer evaluation, or another cell). */
  function refresh() {
    if (!selected) return;
    if (view() === 'drawings') showDrawingsCell();
    else loadCell();
  }

  return {
    refresh,
    /** Cell (label, predicted) was pressed. */
    select(label, predicted) {
      selected = { label, predicted };
      el.detail.hidden = false;
      refresh();
    },
    selected: () => selected,
    /** Out of sight (no matrix to press), the cell kept. */
    hide() {
      el.detail.hidden = true;
    },
    /** No cell open (the other matrix is shown). */
    close() {
      selected = null;
      key = '';
      items = [];
      el.detail.hidden = true;
    },
    /** A new run: nothing open, answers on their way dropped. */
    reset() {
      generation += 1;
      selected = null;
      items = [];
      key = '';
      count = 0;
      reloadWanted = false;
      el.detail.hidden = true;
      el.title.textContent = '';
      el.grid.replaceChildren();
    },
    restyle() {
      repaintDigits(el.grid, items, inkColour());
    },
    /** For the tests: the open cell, its count and images. */
    state: () => (selected
      ? { ...selected, count, shown: items.length, loaded: key !== '' && !loading } : null),
  };
}
