// Which run the panels follow, and which runs the charts draw (issue 12: several runs
// train at once). Every active run and every ticked one is drawn on the charts in its
// own colour; one run is *selected*: the filters, the evaluation and the histograms,
// the progress, the stats, Pause/Stop above and the steering follow it. A run that
// starts is selected unless the selected one still trains (a comparison's runs start
// together) or was chosen; pressing a run in the runs list selects it and keeps it
// (`pin`) until "Follow the newest run". A finished run drawn that this page did not
// watch gets its curves from the runs list and metrics.json.

import { api } from './api.js';
import { ACTIVE, legendLabels, runName } from './jobs.js';

// Heavy data (a run's latest filters, evaluation and histograms, ~100 KB) is kept for
// this many runs at most, besides the active, ticked and selected ones.
const HEAVY_RUNS = 8;
// A finished run drawn that this page did not watch: its loss points are asked for
// (metrics.json) this long after, unless the stream's replay brought them meanwhile.
const HISTORY_WAIT_MS = 1500;

/**
 * @param {object} options
 * @param {ReturnType<import('./jobs.js').createJobs>} options.jobs  the runs this page knows
 * @param {Map<string, string>} options.legend  run id -> its name in the charts' legend
 *   (the charts read it; filled here)
 * @param {object} options.panels  charts, controls, filters, insight, runsList: what
 *   follows the selection
 * @param {(job: object) => boolean} options.ownNetwork  a run of a network of one's own
 * @param {() => object | null} options.serverStatus  the server's latest status
 */
export function createSelection({ jobs, legend, panels, ownNetwork, serverStatus }) {
  const { charts, controls, filters, insight, runsList } = panels;
  let selectedId = null;    // the run the panels and the controls follow
  let pinned = false;       // chosen in the runs list: kept when other runs start
  let legendKey = '';

  /** The runs on the charts: every active one and every ticked one. */
  function drawnJobs() {
    return jobs.ordered().filter((job) => ACTIVE.has(job.state) || job.ticked);
  }

  function updateView() {
    const drawn = drawnJobs();
    legend.clear();
    for (const [id, label] of legendLabels(drawn)) legend.set(id, label);
    for (const job of drawn) if (ownNetwork(job)) legend.set(job.id, `${legend.get(job.id)} · own network`);
    const key = [...legend].map(([id, label]) => `${id}=${label}`).join('|');
    charts.setView(drawn.map((job) => job.id), selectedId, { relabel: key !== legendKey });
    legendKey = key;
  }

  /** The selected run's status, in the shape of the server's (what controls.js shows). */
  function selectedStatus() {
    const last = serverStatus();
    const base = { data: last?.data, max_concurrent_runs: last?.max_concurrent_runs };
    const job = selectedId ? jobs.get(selectedId) : null;
    if (!job) return { ...base, state: 'idle', run_id: null, preset: null, config: null };
    return { ...base, ...job.progress, state: job.state, run_id: job.id, preset: job.preset,
      config: job.config, queue_position: job.queuePosition, message: job.message };
  }

  function showSelected() {
    controls.showStatus(selectedStatus());
  }

  /** Why run `job`'s filters, evaluation and histograms are not shown ('' if they are). */
  function whyNothing(job) {
    if (job.state === 'queued') {
      return `${runName(job)} waits in the queue: its filters, evaluation and histograms appear when it starts.`;
    }
    if (!ACTIVE.has(job.state) && !job.lastFilters && !job.lastEvaluation && !job.lastHistograms) {
      return `${runName(job)} is not training: its filters, evaluation and histograms are sent only while a run `
        + 'trains, and this page did not keep them.';
    }
    return '';
  }

  /** The panels show run `job` (its filters, evaluation, histograms and figures, as far as
   *  this page has them). */
  function showPanels(job) {
    if (!job) {
      filters.reset(null);
      insight.reset(null);
      return;
    }
    const why = whyNothing(job);
    filters.reset(job.spec, why);
    if (job.lastFilters) filters.update(job.lastFilters);
    insight.reset(job.id, why);
    if (job.lastEvaluation) insight.handlers.evaluation(job.lastEvaluation);
    if (job.lastHistograms) insight.handlers.histograms(job.lastHistograms);
    jobs.touch(job);

    // The figures: this run's, from its start.
    controls.adoptRun(job.id);
    controls.applyRun({ run_id: job.id, preset: job.preset, config: job.config }, { isNew: false });
    for (const epoch of [...job.epochs.keys()].sort((a, b) => a - b)) {
      controls.applyEpoch({ ...job.epochs.get(epoch), run_id: job.id });
    }
    if (job.done) controls.applyDone(job.done);
  }

  /** Follow run `id` (pin: the person chose it, keep it when others start). */
  function select(id, { pin = false } = {}) {
    pinned = Boolean(id) && pin;
    const job = id ? jobs.get(id) : null;
    const changed = id !== selectedId;
    selectedId = id;
    // A finished run that is selected is drawn (its tick box says so; untick to hide it).
    if (job && !ACTIVE.has(job.state) && job.state !== 'queued' && !job.ticked) job.ticked = true;
    if (changed) showPanels(job);
    runsList.setSelected(id, { pinned });
    if (job) runsList.update(job);
    updateView();
    showSelected();
    if (job) ensureHistory(job);
  }

  function followNewest() {
    const newest = jobs.newest();
    select(newest ? newest.id : null);
  }

  /** Leave the selected run for `job` (a run that starts) unless the person chose the
   *  selected one or it still trains. */
  function maybeFollow(job) {
    const current = selectedId ? jobs.get(selectedId) : null;
    if (!current || (!pinned && !ACTIVE.has(current.state) && current.state !== 'queued')) select(job.id);
  }

  /** A drawn run this page has no curves of (it trained before the page opened): its
   *  epochs from the runs list at once, its loss points from metrics.json. */
  async function ensureHistory(job) {
    if (job.state === 'queued' || charts.hasBatches(job.id) || job.fetchedHistory) return;
    if (!charts.hasData(job.id)) {
      for (const record of job.epochs.values()) charts.addEpoch({ ...record, run_id: job.id });
    }
    if (ACTIVE.has(job.state) || job.seenLive) return;  // its events bring the rest
    job.fetchedHistory = true;
    // The stream may yet replay it (a page just opened): wait a moment before asking.
    await new Promise((resolve) => { setTimeout(resolve, HISTORY_WAIT_MS); });
    if (job.seenLive || charts.hasBatches(job.id) || jobs.get(job.id) !== job) return;
    try {
      const metrics = await api('GET', `/api/runs/${encodeURIComponent(job.id)}/metrics.json`);
      if (metrics && typeof metrics === 'object' && jobs.get(job.id) === job) {
        if (metrics.spec && !job.spec) job.spec = metrics.spec;
        charts.loadHistory(job.id, metrics);
      }
    } catch (error) {
      job.fetchedHistory = false;
      console.warn(`cnn-live: could not load the history of run ${job.id}`, error);
    }
  }

  return {
    select,
    followNewest,
    maybeFollow,
    updateView,
    showSelected,
    showPanels,
    selectedStatus,
    ensureHistory,
    /** The run followed, or null. */
    id: () => selectedId,
    /** Event `d` is of the run followed. */
    isSelected: (d) => d.run_id === selectedId,
    /** Drop the heavy data of runs past HEAVY_RUNS that nothing shows. */
    trimHeavy() {
      jobs.trim(HEAVY_RUNS, (job) => ACTIVE.has(job.state) || job.ticked || job.id === selectedId);
    },
    /** Run `id` is gone: if it was followed, the newest is. */
    forget(id) {
      if (id !== selectedId) return;
      selectedId = null;
      followNewest();
    },
  };
}
