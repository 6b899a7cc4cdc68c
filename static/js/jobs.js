// What the page knows of every run (issue 12: several train at once): one record per
// run, fed by GET /api/runs (every run, earlier servers' too), by the status (every
// queued or active run, about once a second) and by the runs' own events. The charts,
// the runs list, the controls and the drawing pad's chooser all read it.
//
// Each run gets a colour when the page first hears of it, and keeps it: the runs are
// numbered in the order the server lists them (the page reads the list before it
// opens the event stream), so two pages opened on the same server mostly agree.
//
// Precedence: the stream is newer than a list fetched before its latest event, so a
// list answer only sets the state of a run the stream has not spoken of since the
// list was asked for.

export const ACTIVE = new Set(['running', 'paused', 'stopping']);
export const LIVE = new Set(['queued', 'running', 'paused', 'stopping']);
export const PALETTE_SIZE = 8;  // --run-colour-0 .. --run-colour-7 in app.css

// Settings that tell runs of one preset apart in a legend, in the order they are named.
const SETTINGS = [
  ['learning_rate', 'lr'],
  ['optimizer', ''],
  ['batch_size', 'batch'],
  ['momentum', 'momentum'],
  ['lr_decay', 'decay'],
  ['epochs', 'epochs'],
  ['train_size', 'train'],
  ['seed', 'seed'],
  ['augment_shift', 'shift'],
  ['augment_scale', 'scale'],
  ['augment_rotation', 'rotation'],
  ['augment_stroke', 'stroke'],
];

function short(value) {
  if (typeof value === 'number') return String(Number(value.toPrecision(4)));
  if (value == null) return 'all';
  return String(value);
}

/** "seed #a1b2": the preset and the start of the run's id. */
export function runName(job) {
  const id = String(job?.id || '');
  return `${job?.preset || 'run'} #${id.slice(0, 4)}`;
}

/** "lr 0.003 · adam · batch 64 · 8 epochs": a run's main settings, for the runs list. */
export function describeSettings(config) {
  if (!config || typeof config !== 'object') return '';
  const parts = [];
  if (Number.isFinite(config.learning_rate)) parts.push(`lr ${short(config.learning_rate)}`);
  if (config.optimizer) parts.push(config.optimizer);
  if (Number.isFinite(config.batch_size)) parts.push(`batch ${config.batch_size}`);
  if (Number.isFinite(config.train_size)) parts.push(`${config.train_size} images`);
  return parts.join(' · ');
}

/** The legend's names of the runs drawn together: the run's name, or, for runs of one
 *  preset drawn side by side, the preset and the settings in which they differ
 *  ("default lr 0.003"). Returns Map id -> label. */
export function legendLabels(list) {
  const labels = new Map();
  const byPreset = new Map();
  for (const job of list) {
    const group = byPreset.get(job.preset) || [];
    group.push(job);
    byPreset.set(job.preset, group);
  }
  for (const group of byPreset.values()) {
    if (group.length < 2) {
      for (const job of group) labels.set(job.id, runName(job));
      continue;
    }
    const differing = SETTINGS.filter(([key]) => {
      const values = new Set(group.map((job) => JSON.stringify(job.config?.[key] ?? null)));
      return values.size > 1;
    }).slice(0, 2);
    for (const job of group) {
      const parts = differing.map(([key, word]) => (word ? `${word} ${short(job.config?.[key])}`
        : short(job.config?.[key])));
      labels.set(job.id, parts.length ? `${job.preset} ${parts.join(' ')}` : runName(job));
    }
  }
  // Two runs alike in every setting named: their ids tell them apart.
  const seen = new Map();
  for (const [id, label] of labels) seen.set(label, (seen.get(label) || 0) + 1);
  for (const job of list) {
    const label = labels.get(job.id);
    if (seen.get(label) > 1 && label !== runName(job)) labels.set(job.id, `${label} #${job.id.slice(0, 4)}`);
  }
  return labels;
}

function newJob(id, colour) {
  return {
    id,
    colour,                 // palette index, fixed for the page's life
    preset: '',
    config: null,
    spec: null,
    state: 'queued',
    outcome: null,          // finished, stopped, failed, interrupted
    queuePosition: null,
    node: null,
    progress: { epoch: 0, epochs: 0, step: 0, steps: 0, progress: 0, eta_seconds: null,
      learning_rate: null, momentum: null, elapsed_seconds: null },
    message: null,
    startedAt: null,
    checkpoint: null,
    checkpointEpoch: null,
    epochs: new Map(),      // epoch number -> record
    finalAccuracy: null,
    done: null,             // its "done" event
    seenLive: false,        // this page had its "run" event (its curves, filters...)
    ticked: false,          // drawn on the charts once it is no longer active
    touched: 0,             // the stream's event count when the stream last set its state
    listed: -1,             // its place in the server's list, -1 before the list said
    lastFilters: null,
    lastEvaluation: null,
    lastHistograms: null,
    heavyAt: 0,             // when its heavy data (above) was last set or shown
    fetchedHistory: false,  // metrics.json asked for (a run this page did not watch)
  };
}

export function createJobs() {
  const jobs = new Map();   // id -> job, in the order the page heard of them
  let colours = 0;
  let streamEvents = 0;     // stream events seen (for the list's precedence)
  let heavyClock = 0;

  function ensure(id) {
    let job = jobs.get(id);
    if (!job) {
      job = newJob(id, colours % PALETTE_SIZE);
      colours += 1;
      jobs.set(id, job);
    }
    return job;
  }

  function setProgress(job, s) {
    const p = job.progress;
    for (const key of ['epoch', 'epochs', 'step', 'steps', 'progress', 'eta_seconds', 'learning_rate',
      'momentum', 'elapsed_seconds']) {
      if (s[key] !== undefined) p[key] = s[key];
    }
  }

  /** One run's status (an entry of status.runs, or the top-level fields). */
  function applyRunStatus(s, { fromStream = true } = {}) {
    if (!s || typeof s.run_id !== 'string' || !s.run_id) return null;
    const job = ensure(s.run_id);
    if (s.preset) job.preset = s.preset;
    if (s.config) job.config = s.config;
    if (typeof s.state === 'string' && s.state !== 'idle') {
      // A run's "done" already said how it ended: an older status cannot bring it back.
      if (!(job.done && LIVE.has(s.state))) job.state = s.state;
    }
    job.queuePosition = Number.isFinite(s.queue_position) ? s.queue_position : null;
    if (s.node !== undefined) job.node = s.node;
    if (s.message !== undefined) job.message = s.message;
    setProgress(job, s);
    if (fromStream) job.touched = streamEvents;
    return job;
  }

  return {
    get: (id) => jobs.get(id) || null,
    has: (id) => jobs.has(id),
    ensure,
    all: () => [...jobs.values()],
    /** The runs in the server's order (oldest first); runs not listed yet at the end. */
    ordered() {
      const list = [...jobs.values()];
      const order = new Map(list.map((job, i) => [job.id, i]));
      return list.sort((a, b) => {
        if (a.listed >= 0 && b.listed >= 0) return a.listed - b.listed;
        return order.get(a.id) - order.get(b.id);
      });
    },
    /** The newest run that is training (or paused), else the newest listed. */
    newest() {
      const list = this.ordered();
      for (let i = list.length - 1; i >= 0; i--) if (ACTIVE.has(list[i].state)) return list[i];
      return list.length ? list[list.length - 1] : null;
    },
    isActive: (job) => Boolean(job && ACTIVE.has(job.state)),
    /** Count a stream event (call before applying it). */
    streamEvent() {
      streamEvents += 1;
      return streamEvents;
    },
    streamEvents: () => streamEvents,

    /** The status (from the stream or an answer): every queued or active run, and the
     *  top-level one. Returns the runs it changed. */
    applyStatus(status, { fromStream = true } = {}) {
      const changed = new Set();
      const live = new Set();
      for (const s of Array.isArray(status?.runs) ? status.runs : []) {
        const job = applyRunStatus(s, { fromStream });
        if (job) {
          changed.add(job);
          live.add(job.id);
        }
      }
      // The top-level run: the current one, or the run an answer speaks of.
      if (status?.run_id && status.state !== 'idle') {
        const job = applyRunStatus(status, { fromStream });
        if (job) changed.add(job);
      }
      // A run the page thought live that the status no longer lists has ended; its
      // "done" says how (or the list will).
      if (fromStream && Array.isArray(status?.runs)) {
        for (const job of jobs.values()) {
          if (LIVE.has(job.state) && !live.has(job.id) && job.id !== status.run_id) {
            job.queuePosition = null;
            changed.add(job);
            job.stale = true;
          }
        }
      }
      return changed;
    },
    applyRunStatus,

    /** A "run" event: the run starts training (again, for a continued or stepped run). */
    applyRun(event) {
      const job = ensure(event.run_id);
      if (event.preset) job.preset = event.preset;
      if (event.config) job.config = event.config;
      if (event.spec) job.spec = event.spec;
      job.state = 'running';
      job.outcome = null;
      job.done = null;
      job.message = null;
      job.queuePosition = null;
      // A continued (or stepped) run keeps its epochs up to its checkpoint; a run that
      // starts has none yet (a late page is sent them again).
      const kept = Number.isFinite(event.continued_from) ? event.continued_from : 0;
      job.epochs = new Map([...job.epochs].filter(([epoch]) => epoch <= kept));
      job.seenLive = true;
      job.ticked = true;         // drawn when it ends, as it was while it trained
      job.touched = streamEvents;
      if (Number.isFinite(event.config?.epochs)) job.progress.epochs = event.config.epochs;
      return job;
    },
    applyBatch(event) {
      const job = ensure(event.run_id);
      setProgress(job, event);
      return job;
    },
    applyEpoch(event) {
      const job = ensure(event.run_id);
      if (Number.isFinite(event.epoch)) job.epochs.set(event.epoch, event);
      if (Number.isFinite(event.epochs)) job.progress.epochs = Math.max(job.progress.epochs || 0, event.epochs);
      if (Number.isFinite(event.test_accuracy)) job.finalAccuracy = event.test_accuracy;
      return job;
    },
    applyDone(event) {
      const job = ensure(event.run_id);
      job.done = event;
      job.outcome = event.state || 'finished';
      job.state = event.state === 'failed' ? 'failed' : 'finished';
      job.queuePosition = null;
      if (Number.isFinite(event.test_accuracy)) job.finalAccuracy = event.test_accuracy;
      if (job.outcome === 'finished') {
        job.progress.progress = 1;
        job.progress.eta_seconds = 0;
      }
      if (Number.isFinite(event.seconds)) job.progress.elapsed_seconds = event.seconds;
      job.touched = streamEvents;
      return job;
    },
    applyError(event) {
      const job = ensure(event.run_id);
      job.state = 'failed';
      job.outcome = 'failed';
      job.message = event.message || job.message;
      job.touched = streamEvents;
      return job;
    },
    /** Heavy data (the latest filters, evaluation and histograms of a run): kept for a
     *  few runs only. */
    keep(job, key, event) {
      job[key] = event;
      heavyClock += 1;
      job.heavyAt = heavyClock;
    },
    touch(job) {
      heavyClock += 1;
      job.heavyAt = heavyClock;
    },
    /** Let go of the heavy data of all but `limit` runs, sparing those in `spare`. */
    trim(limit, spare) {
      const holders = [...jobs.values()].filter((job) => job.lastFilters || job.lastEvaluation
        || job.lastHistograms);
      if (holders.length <= limit) return;
      holders.sort((a, b) => a.heavyAt - b.heavyAt);
      let over = holders.length - limit;
      for (const job of holders) {
        if (over <= 0) break;
        if (spare(job)) continue;
        job.lastFilters = null;
        job.lastEvaluation = null;
        job.lastHistograms = null;
        over -= 1;
      }
    },
    remove(id) {
      jobs.delete(id);
    },

    /** GET /api/runs: `list` was asked for when the stream had said `asked` events. */
    applyList(list, asked) {
      const changed = new Set();
      const ids = new Set();
      (Array.isArray(list) ? list : []).forEach((run, index) => {
        if (!run || typeof run.run_id !== 'string') return;
        ids.add(run.run_id);
        const job = ensure(run.run_id);
        job.listed = index;
        if (run.preset) job.preset = run.preset;
        if (run.config) job.config = run.config;
        if (run.spec) job.spec = run.spec;
        if (job.touched <= asked) {
          if (typeof run.state === 'string') job.state = run.state;
          job.outcome = run.outcome ?? job.outcome;
          job.message = run.message ?? null;
          if (!LIVE.has(job.state)) job.queuePosition = null;
        }
        job.stale = false;
        job.startedAt = run.started_at ?? job.startedAt;
        job.checkpoint = run.checkpoint ?? null;
        job.checkpointEpoch = run.checkpoint_epoch ?? null;
        job.node = run.node ?? job.node;
        if (Number.isFinite(run.final_test_accuracy)) job.finalAccuracy = run.final_test_accuracy;
        for (const record of Array.isArray(run.epochs) ? run.epochs : []) {
          if (Number.isFinite(record?.epoch) && !job.epochs.has(record.epoch)) {
            job.epochs.set(record.epoch, record);
          }
        }
        if (!Number.isFinite(job.finalAccuracy)) {
          const last = [...job.epochs.values()].pop();
          if (Number.isFinite(last?.test_accuracy)) job.finalAccuracy = last.test_accuracy;
        }
        const planned = Number.isFinite(run.config?.epochs) ? run.config.epochs : 0;
        job.progress.epochs = Math.max(job.progress.epochs || 0, planned, job.epochs.size);
        changed.add(job);
      });
      // Runs the server forgot (a cancelled queued run whose event this page missed).
      const gone = [];
      for (const job of jobs.values()) {
        if (!ids.has(job.id) && job.touched <= asked && job.listed >= 0) gone.push(job.id);
      }
      return { changed, gone };
    },
  };
}
