// The confusion matrix as a table of buttons: rows = the true digit, columns = the
// network's answer, each showing its count as its name says it and shaded by it (right
// answers on the diagonal in green against their row, mistakes in red against the
// largest mistake), with the share of each digit read right at the row's end. One tab
// stop for the whole matrix, the arrow keys (and Home/End) move between cells; a matrix
// wider than its box (a narrow phone) scrolls sideways and says so. Pressing a cell is
// handed on (`onSelect`): its images are confusion-cell.js's job.

import { newButton } from './buttons.js';
import { cellColours } from './contrast.js';
import { cssVar, formatInteger, formatPercent, parseColour, placeholder } from './format.js';

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

function describeCell(t, p, count) {
  return `true ${t}, predicted ${p}: ${formatInteger(count)} image${count === 1 ? '' : 's'}`;
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

function headRow(n) {
  const row = document.createElement('tr');
  const corner = headerCell('col', 'confusion-corner', '', '');
  corner.append(cornerLabel('true', 'predicted'));
  row.append(corner);
  for (let p = 0; p < n; p++) row.append(headerCell('col', 'confusion-col', String(p), `predicted ${p}`));
  row.append(headerCell('col', 'confusion-right-head', 'right', 'the share of this digit read right'));
  return row;
}

// One tab stop for the whole matrix; the arrow keys move between its cells.
const STEPS = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

/**
 * @param {object} options
 * @param {HTMLElement} options.matrixEl  the table's box
 * @param {(label: number, predicted: number) => void} options.onSelect  a cell was pressed
 */
export function createConfusionTable({ matrixEl, onSelect }) {
  let size = 0;            // classes of the table built
  let buttons = [];        // [true][predicted] -> <button>
  let rowNotes = [];       // per row: the share read right

  function cellButton(t, p) {
    const button = newButton(`confusion-cell${t === p ? ' is-diagonal' : ''}`);
    button.dataset.label = String(t);
    button.dataset.predicted = String(p);
    button.setAttribute('aria-pressed', 'false');
    button.tabIndex = t === 0 && p === 0 ? 0 : -1;
    button.addEventListener('click', () => onSelect(t, p));
    button.addEventListener('focus', () => rove(t, p));
    button.addEventListener('keydown', (event) => moveFocus(event, t, p));
    return button;
  }

  function build(n, caption) {
    const table = document.createElement('table');
    table.className = 'confusion-table';
    const captionEl = document.createElement('caption');
    captionEl.className = 'visually-hidden';
    captionEl.textContent = caption;
    const head = document.createElement('thead');
    head.append(headRow(n));
    const body = document.createElement('tbody');
    buttons = [];
    rowNotes = [];
    for (let t = 0; t < n; t++) {
      const tr = document.createElement('tr');
      tr.append(headerCell('row', 'confusion-row', String(t), `true ${t}`));
      const row = [];
      for (let p = 0; p < n; p++) {
        const td = document.createElement('td');
        const button = cellButton(t, p);
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
    table.append(captionEl, head, body);
    matrixEl.replaceChildren(table);
    size = n;
  }

  function paintRow(row, t, shades, colours) {
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

  /** Mark the cell `selected` ({label, predicted}, or null) as pressed. */
  function markSelected(selected) {
    buttons.forEach((row, t) => row.forEach((button, p) => {
      const on = Boolean(selected) && selected.label === t && selected.predicted === p;
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
      button.classList.toggle('is-selected', on);
    }));
  }

  return {
    markSelected,
    /** Show `matrix`, described by `caption`, with cell `selected` pressed. */
    paint(matrix, caption, selected) {
      if (matrix.length !== size) build(matrix.length, caption);
      matrixEl.querySelector('caption').textContent = caption;
      const shades = cellShades(matrix);
      const colours = palette();
      matrix.forEach((row, t) => paintRow(row, t, shades, colours));
      markSelected(selected);
      showScrollHint();
    },
    /** No matrix: `text` says why. */
    clear(text) {
      size = 0;
      buttons = [];
      rowNotes = [];
      placeholder(matrixEl, text, 'evaluate-empty');
      showScrollHint();
    },
  };
}
