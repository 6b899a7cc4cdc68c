// The runs list (#runs): one row per run, in the server's order, each in its run's
// colour. A row says the run's state (and its place in the queue), its epochs, its test
// accuracy and, while it trains, its progress; it has the run's own buttons (Pause or
// Resume, Stop, Step one epoch, Cancel for a queued run, Continue for an interrupted
// one, the CSV and JSON of its metrics, "Edit network" that loads its network into the
// builder) and a tick box that draws a finished run on the charts (an active run always
// is). Pressing a row (its name is a button) makes the panels and the controls above
// follow that run.
//
// Rows are made once and then patched field by field, only where something changed:
// a room of browsers gets a status every second, and many batches in between, which
// never touch this list.

import { isUnavailable, newButton, setUnavailable } from './buttons.js';
import { api, ApiError } from './api.js';
import { downloadMetrics } from './export.js';
import { formatClock, formatPercent } from './format.js';
import { ACTIVE, LIVE, describeSettings, runName } from './jobs.js';

const ACTIONS = [
  // [action, text, when the button shows]
  ['pause', 'Pause', (job) => job.state === 'running'],
  ['resume', 'Resume', (job) => job.state === 'paused'],
  ['step', 'Step', (job) => job.state === 'paused'
    || (job.state === 'finished' && (Boolean(job.checkpoint) || job.epochs.size > 0))],
  ['stop', 'Stop', (job) => job.state === 'running' || job.state === 'paused'],
  ['cancel', 'Cancel', (job) => job.state === 'queued'],
  ['continue', 'Continue', (job) => job.state === 'interrupted' && Boolean(job.checkpoint)],
];

const TITLES = {
  pause: 'Pause this run between batches',
  resume: 'Resume this run',
  step: 'One epoch more: a paused run trains to its epoch\'s end and pauses again; a finished run trains one more epoch',
  stop: 'Stop this run between batches',
  cancel: 'Take this run out of the queue',
};

function errorText(error) {
  return error instanceof ApiError ? error.message : String(error.message || error);
}

/** "running · 1/4 epochs · test 91.00% · 10:32", "queued · 2nd in the queue". */
export function describeRow(job) {
  const epochs = job.epochs.size;
  const configured = Number.isFinite(job.config?.epochs) ? job.config.epochs : null;
  // A run stepped on after it finished has more epochs than it was started with.
  const planned = configured != null ? Math.max(configured, epochs, job.progress.epochs || 0) : null;
  const parts = [];
  const stopped = job.outcome === 'stopped' && job.state === 'finished';
  parts.push(stopped ? 'stopped' : job.state);
  if (job.state === 'queued') {
    if (Number.isFinite(job.queuePosition)) {
      parts.push(job.queuePosition === 1 ? 'next in the queue' : `number ${job.queuePosition} in the queue`);
    }
    if (planned) parts.push(`${planned} epoch${planned === 1 ? '' : 's'}`);
    return parts.join(' · ');
  }
  parts.push(`${epochs}${planned ? `/${planned}` : ''} epoch${(planned ?? epochs) === 1 ? '' : 's'}`);
  if (Number.isFinite(job.finalAccuracy)) parts.push(`test ${formatPercent(job.finalAccuracy)}`);
  const clock = formatClock(job.startedAt);
  if (clock) parts.push(clock);
  return parts.join(' · ');
}

/** Run `job`'s row, its parts named (filled in by update); `withEdit`: an "Edit network"
 *  button too. */
function rowElements(job, { withEdit }) {
  const li = document.createElement('li');
  li.className = 'run';
  li.dataset.runId = job.id;

  const label = document.createElement('label');
  label.className = 'run-label';
  label.title = 'Draw this run on the charts';
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.className = 'run-toggle';
  box.dataset.runId = job.id;
  const swatch = document.createElement('span');
  swatch.className = `run-swatch run-colour-${job.colour}`;
  swatch.setAttribute('aria-hidden', 'true');
  label.append(box, swatch);

  const select = newButton('run-select');
  select.dataset.runId = job.id;
  const name = document.createElement('span');
  name.className = 'run-name';
  const preset = document.createElement('span');
  preset.className = 'run-preset';
  select.append(name, preset);

  const meta = document.createElement('span');
  meta.className = 'run-meta';

  const progress = document.createElement('progress');
  progress.className = 'run-progress';
  progress.max = 1;
  progress.value = 0;

  const actions = document.createElement('span');
  actions.className = 'run-actions';
  const buttons = new Map();
  for (const [action, text] of ACTIONS) {
    // Made once; in the row only while it applies (see update).
    const b = newButton(`run-action run-${action}`, text);
    b.dataset.runId = job.id;
    b.dataset.action = action;
    if (TITLES[action]) b.title = TITLES[action];
    buttons.set(action, b);
  }
  const csv = newButton('run-download run-csv', 'CSV');
  const json = newButton('run-download run-json', 'JSON');
  for (const [b, format] of [[csv, 'csv'], [json, 'json']]) {
    b.dataset.runId = job.id;
    b.dataset.format = format;
    actions.append(b);
  }
  const edit = newButton('run-edit', 'Edit network');
  edit.dataset.runId = job.id;
  if (withEdit) actions.append(edit);

  li.append(label, select, meta, progress, actions);
  return { li, label, box, swatch, select, name, preset, meta, progress, actions, buttons, csv, json,
    edit, shown: {} };
}

/**
 * main.js hands in the list's elements, the runs (jobs.js) and what to do when a row is
 * pressed, ticked or acted on; besides:
 * @param {(runId: string) => Promise<void>} [onEdit]  "Edit network" pressed (throws: the
 *   message to show)
 * @param {(job: object) => boolean} [ownNetwork]  the run trains a network of its own
 *   (its row says so)
 */
export function createRuns({ listEl, errorEl, summaryEl, followButton, jobs, onSelect, onTick,
  onAnswer, onEdit, ownNetwork = () => false }) {
  const rows = new Map();    // run id -> {li, ...its parts, shown: {...}}
  let selected = null;
  let empty = listEl.querySelector('.runs-empty');

  function showError(text) {
    if (!errorEl) return;
    errorEl.textContent = text || '';
    errorEl.hidden = !text;
  }

  function set(row, key, value, apply) {
    if (row.shown[key] === value) return;
    row.shown[key] = value;
    apply(value);
  }

  /** Bring run `job`'s row up to date (only what changed is touched). */
  function update(job) {
    let row = rows.get(job.id);
    if (!row) {
      row = rowElements(job, { withEdit: Boolean(onEdit) });
      rows.set(job.id, row);
      placeRow(job, row);
    }
    const n = runName(job);
    set(row, 'name', n, (v) => {
      row.name.textContent = v;
      row.box.setAttribute('aria-label', `Draw ${v} on the charts`);
      row.select.setAttribute('aria-label', `Follow ${v}: ${job.preset} ${describeSettings(job.config)}`);
      row.csv.setAttribute('aria-label', `CSV: download ${v}'s metrics`);
      row.json.setAttribute('aria-label', `JSON: download ${v}'s metrics`);
      row.csv.title = `Download ${v}'s metrics as CSV`;
      row.json.title = `Download ${v}'s metrics as JSON`;
      row.edit.setAttribute('aria-label', `Edit the network of ${v}`);
      row.edit.title = `Load ${v}'s network into "Build your own network"`;
      for (const [action, b] of row.buttons) {
        b.setAttribute('aria-label', `${b.textContent} ${v}`);
        if (action === 'continue') {
          b.title = `Train ${v} on from its checkpoint of epoch ${job.checkpointEpoch ?? '?'}`;
        }
      }
    });
    const settings = describeSettings(job.config);
    set(row, 'settings', ownNetwork(job) ? `own network${settings ? ` · ${settings}` : ''}` : settings,
      (v) => { row.preset.textContent = v; });
    set(row, 'state', job.state, (v) => { row.li.dataset.state = v; });
    set(row, 'meta', describeRow(job), (v) => { row.meta.textContent = v; });
    const active = ACTIVE.has(job.state);
    set(row, 'checked', active || job.ticked, (v) => { row.box.checked = v; });
    set(row, 'locked', active, (v) => {
      row.box.disabled = v;
      row.label.title = v ? 'An active run is always drawn on the charts' : 'Draw this run on the charts';
    });
    const fraction = Number.isFinite(job.progress.progress) ? Math.min(1, Math.max(0, job.progress.progress)) : 0;
    set(row, 'progressShown', LIVE.has(job.state), (v) => { row.progress.hidden = !v; });
    set(row, 'progress', Math.round(fraction * 1000) / 1000, (v) => {
      row.progress.value = v;
      row.progress.setAttribute('aria-label', `${n}: ${Math.round(v * 100)}% done`);
    });
    const shownActions = ACTIONS.filter(([, , when]) => when(job)).map(([action]) => action);
    set(row, 'actions', shownActions.join(','), () => {
      // The buttons that apply, in their order, before the downloads; a button that
      // stays keeps its element (and the keyboard's focus).
      const wanted = shownActions.map((action) => row.buttons.get(action));
      for (const b of row.buttons.values()) if (!wanted.includes(b)) b.remove();
      let before = row.csv;
      for (let i = wanted.length - 1; i >= 0; i--) {
        if (wanted[i].nextSibling !== before || wanted[i].parentNode !== row.actions) {
          row.actions.insertBefore(wanted[i], before);
        }
        before = wanted[i];
      }
    });
    set(row, 'message', job.message || '', (v) => { row.li.title = v; });
    set(row, 'selected', job.id === selected, (v) => {
      row.li.classList.toggle('run-selected', v);
      row.select.setAttribute('aria-pressed', v ? 'true' : 'false');
      if (v) row.li.setAttribute('aria-current', 'true');
      else row.li.removeAttribute('aria-current');
    });
  }

  function placeRow(job, row) {
    if (empty) {
      empty.remove();
      empty = null;
    }
    // Its place in the server's order; usually the end.
    const order = jobs.ordered();
    const at = order.findIndex((j) => j.id === job.id);
    let before = null;
    for (let i = at + 1; i < order.length; i++) {
      const next = rows.get(order[i].id);
      if (next && next.li.parentNode === listEl) {
        before = next.li;
        break;
      }
    }
    listEl.insertBefore(row.li, before);
  }

  /** After a list fetch: rows in the server's order (moved only if out of it). */
  function reorder() {
    const order = jobs.ordered().map((job) => rows.get(job.id)).filter(Boolean);
    const current = [...listEl.children].filter((li) => li.classList.contains('run'));
    if (order.length === current.length && order.every((row, i) => row.li === current[i])) return;
    for (const row of order) listEl.append(row.li);
  }

  function remove(id) {
    const row = rows.get(id);
    if (row) row.li.remove();
    rows.delete(id);
    if (!rows.size && !empty) {
      empty = document.createElement('li');
      empty.className = 'runs-empty';
      empty.textContent = 'No runs yet.';
      listEl.append(empty);
    }
  }

  // ----- the rows' controls -----
  async function act(b) {
    const { runId, action } = b.dataset;
    const path = `/api/runs/${encodeURIComponent(runId)}`;
    setUnavailable(b, true);
    const seen = onAnswer ? onAnswer.seen() : 0;
    try {
      if (action === 'cancel') {
        await api('DELETE', path);
      } else {
        const answer = await api('POST', `${path}/${action}`, {});
        if (onAnswer) onAnswer.apply(answer, seen);
      }
      showError('');
    } catch (error) {
      const job = jobs.get(runId);
      showError(`Could not ${action} ${job ? runName(job) : 'the run'}: ${errorText(error)}`);
    } finally {
      setUnavailable(b, false);
    }
  }

  listEl.addEventListener('click', async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const actionButton = target.closest('button.run-action');
    if (actionButton) {
      if (!isUnavailable(actionButton)) act(actionButton);
      return;
    }
    const edit = target.closest('button.run-edit');
    if (edit) {
      if (isUnavailable(edit)) return;
      setUnavailable(edit, true);
      try {
        await onEdit(edit.dataset.runId);
        showError('');
      } catch (error) {
        const job = jobs.get(edit.dataset.runId);
        showError(`Could not load the network of ${job ? runName(job) : 'the run'}: ${errorText(error)}`);
      } finally {
        setUnavailable(edit, false);
      }
      return;
    }
    const download = target.closest('button.run-download');
    if (download) {
      if (isUnavailable(download)) return;
      setUnavailable(download, true);
      try {
        await downloadMetrics(download.dataset.runId, download.dataset.format);
        showError('');
      } catch (error) {
        showError(`Could not download the ${download.dataset.format.toUpperCase()}: ${errorText(error)}`);
      } finally {
        setUnavailable(download, false);
      }
      return;
    }
    if (target.closest('label.run-label')) return;  // the tick box
    // Anywhere else on a row (its name is the keyboard's way): follow that run.
    const li = target.closest('li.run');
    if (li && listEl.contains(li)) onSelect(li.dataset.runId);
  });

  listEl.addEventListener('change', (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.classList.contains('run-toggle')) return;
    onTick(box.dataset.runId, box.checked);
  });

  if (followButton) {
    followButton.addEventListener('click', () => onSelect(null));
  }

  return {
    update,
    /** Every row (after a list fetch, a selection, a theme change). */
    updateAll() {
      for (const job of jobs.ordered()) update(job);
      reorder();
    },
    remove,
    setSelected(id, { pinned = false } = {}) {
      const before = selected;
      selected = id;
      for (const key of [before, id]) {
        const job = key ? jobs.get(key) : null;
        if (job) update(job);
      }
      if (followButton) followButton.hidden = !pinned;
    },
    /** "2 training (2 at once) · 1 queued", from the status. */
    summary(status) {
      if (!summaryEl) return;
      const runs = Array.isArray(status?.runs) ? status.runs : [];
      const training = runs.filter((r) => ACTIVE.has(r.state)).length;
      const queued = runs.filter((r) => r.state === 'queued').length;
      const at = Number.isFinite(status?.max_concurrent_runs) ? status.max_concurrent_runs : null;
      let text = '';
      if (training || queued) {
        text = `${training} training${at ? ` (at most ${at} at once)` : ''}`;
        if (queued) text += ` · ${queued} queued`;
      }
      if (summaryEl.textContent !== text) summaryEl.textContent = text;
    },
    showError,
    row: (id) => rows.get(id)?.li || null,
  };
}
