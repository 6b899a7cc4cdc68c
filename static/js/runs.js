// The list of this server's runs (#runs): a checkbox per run adds its test-accuracy
// line to the accuracy chart, and two buttons download its metrics as CSV or JSON
// (fetched with the token, see export.js). Runs of earlier servers are listed too; one
// that was interrupted (the server stopped mid-run) has a Continue button.

import { api, ApiError } from './api.js';
import { downloadMetrics } from './export.js';
import { cssVar, formatClock, formatPercent } from './format.js';

const COLOURS = 6; // --run-colour-0 .. --run-colour-5 in app.css

function finalAccuracy(run) {
  if (Number.isFinite(run.final_test_accuracy)) return run.final_test_accuracy;
  const epochs = Array.isArray(run.epochs) ? run.epochs : [];
  for (let i = epochs.length - 1; i >= 0; i--) {
    if (Number.isFinite(epochs[i]?.test_accuracy)) return epochs[i].test_accuracy;
  }
  return null;
}

function downloadButton(run, index, format) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = `run-download run-${format}`;
  button.dataset.runId = run.run_id;
  button.dataset.format = format;
  button.textContent = format.toUpperCase();
  button.title = `Download run ${index + 1}'s metrics as ${format.toUpperCase()}`;
  return button;
}

function continueButton(run, index) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'run-download run-continue';
  button.dataset.runId = run.run_id;
  button.textContent = 'Continue';
  button.title = `Train run ${index + 1} on from its checkpoint of epoch ${run.checkpoint_epoch}`;
  return button;
}

export function createRuns({ listEl, onChange, errorEl }) {
  let runs = [];
  const selected = new Set();
  let loading = null;
  let again = false;

  function colourIndex(index) {
    return index % COLOURS;
  }

  function comparisons() {
    const out = [];
    runs.forEach((run, index) => {
      if (!selected.has(run.run_id)) return;
      const points = (Array.isArray(run.epochs) ? run.epochs : [])
        .filter((e) => Number.isFinite(e?.epoch) && Number.isFinite(e?.test_accuracy))
        .map((e) => [e.epoch, e.test_accuracy]);
      out.push({
        id: run.run_id,
        label: `run ${index + 1} test`,
        colour: cssVar(`--run-colour-${colourIndex(index)}`, '#7c3aed'),
        points,
      });
    });
    return out;
  }

  function render() {
    const items = runs.map((run, index) => {
      const li = document.createElement('li');
      li.className = 'run';
      li.dataset.runId = run.run_id;

      const label = document.createElement('label');
      label.className = 'run-label';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.className = 'run-toggle';
      box.dataset.runId = run.run_id;
      box.checked = selected.has(run.run_id);
      box.setAttribute('aria-label', `Show run ${index + 1}'s test accuracy on the accuracy chart`);
      const swatch = document.createElement('span');
      swatch.className = `run-swatch run-colour-${colourIndex(index)}`;
      const name = document.createElement('span');
      name.className = 'run-name';
      name.textContent = `Run ${index + 1}`;
      const preset = document.createElement('span');
      preset.className = 'run-preset';
      preset.textContent = run.preset || '';
      label.append(box, swatch, name, preset);

      const meta = document.createElement('span');
      meta.className = 'run-meta';
      const epochs = Array.isArray(run.epochs) ? run.epochs.length : 0;
      // A run stepped on after it finished has more epochs than it was started with.
      const planned = Number.isFinite(run.config?.epochs) ? Math.max(run.config.epochs, epochs) : null;
      const parts = [];
      // A stopped run ends "finished" too: its outcome says so (older servers: epochs missing).
      const stopped = run.outcome ? run.outcome === 'stopped'
        : run.state === 'finished' && Number.isFinite(planned) && epochs < planned;
      if (run.state) parts.push(stopped ? 'stopped' : run.state);
      parts.push(`${epochs}${planned ? `/${planned}` : ''} epoch${(planned ?? epochs) === 1 ? '' : 's'}`);
      const accuracy = finalAccuracy(run);
      if (accuracy != null) parts.push(`test ${formatPercent(accuracy)}`);
      const clock = formatClock(run.started_at);
      if (clock) parts.push(clock);
      meta.textContent = parts.join(' · ');

      const downloads = document.createElement('span');
      downloads.className = 'run-downloads';
      downloads.append(downloadButton(run, index, 'csv'), downloadButton(run, index, 'json'));
      if (run.state === 'interrupted' && run.checkpoint) downloads.append(continueButton(run, index));

      if (run.message) li.title = run.message;
      li.append(label, meta, downloads);
      return li;
    });
    if (!items.length) {
      const empty = document.createElement('li');
      empty.className = 'runs-empty';
      empty.textContent = 'No runs yet.';
      items.push(empty);
    }
    listEl.replaceChildren(...items);
  }

  function showError(text) {
    if (!errorEl) return;
    errorEl.textContent = text || '';
    errorEl.hidden = !text;
  }

  listEl.addEventListener('click', async (event) => {
    const button = event.target.closest('button.run-continue');
    if (!button || button.disabled) return;
    button.disabled = true;
    try {
      await api('POST', `/api/runs/${encodeURIComponent(button.dataset.runId)}/continue`, {});
      showError('');
    } catch (error) {
      showError(`Could not continue the run: `
        + `${error instanceof ApiError ? error.message : String(error.message || error)}`);
      button.disabled = false;
    }
    refresh();
  });

  listEl.addEventListener('click', async (event) => {
    const button = event.target.closest('button.run-download:not(.run-continue)');
    if (!button || button.disabled) return;
    button.disabled = true;
    try {
      await downloadMetrics(button.dataset.runId, button.dataset.format);
      showError('');
    } catch (error) {
      showError(`Could not download the ${button.dataset.format.toUpperCase()}: `
        + `${error instanceof ApiError ? error.message : String(error.message || error)}`);
    } finally {
      button.disabled = false;
    }
  });

  listEl.addEventListener('change', (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.classList.contains('run-toggle')) return;
    if (box.checked) selected.add(box.dataset.runId);
    else selected.delete(box.dataset.runId);
    onChange(comparisons());
  });

  /** Fetch GET /api/runs again; overlapping calls collapse into one more fetch. */
  async function refresh() {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        do {
          again = false;
          const list = await api('GET', '/api/runs');
          runs = Array.isArray(list) ? list : [];
          const ids = new Set(runs.map((r) => r.run_id));
          for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
          render();
          onChange(comparisons());
        } while (again);
      } catch (error) {
        console.warn('cnn-live: could not load the runs', error);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  return {
    refresh,
    restyle: () => onChange(comparisons()),
  };
}
