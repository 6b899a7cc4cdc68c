// The charts' data, one run at a time (charts.js draws it): batch losses at their x in
// epochs, kept sorted whatever order events come in (a replay, a late point), the
// smoothed loss, epoch records and live changes; and the alignment of several runs'
// series on one x axis, as uPlot wants them. Functions of plain arrays, no DOM (the
// add* ones change the run data they are handed).

/** One run's data on the charts. */
export function newSeries() {
  return {
    planned: 0,
    batchX: [],
    batchLoss: [],
    smoothed: [],
    smoothedValid: 0,       // smoothed[0..smoothedValid) are up to date
    smoothState: { ema: 0, weight: 0 },
    epochs: new Map(),      // epoch number -> epoch record
    markers: [],            // live changes, sorted by x: [{x, label, learning_rate, momentum}]
  };
}

/** Add batch event `b` to run data `s` at its x (a replayed or late point replaces or
 *  is inserted in order: applying an event twice changes nothing). False when it has
 *  no place on the x axis. */
export function addBatchPoint(s, b) {
  const x = stepX(b);
  if (!Number.isFinite(x)) return false;
  const loss = Number.isFinite(b.loss) ? b.loss : null;
  const n = s.batchX.length;
  if (n === 0 || x > s.batchX[n - 1]) {
    s.batchX.push(x);
    s.batchLoss.push(loss);
    return true;
  }
  const at = lowerBound(s.batchX, x);
  if (s.batchX[at] === x) s.batchLoss[at] = loss;
  else {
    s.batchX.splice(at, 0, x);
    s.batchLoss.splice(at, 0, loss);
  }
  s.smoothedValid = 0; // the running average past `at` is stale: recompute it
  return true;
}

/** Add a live change (a "hyperparameters" event) to run data `s` as a marker labelled
 *  `label`, in order of x; a replayed one replaces its own. False when it has no x. */
export function addMarker(s, change, label) {
  const x = stepX(change);
  if (!Number.isFinite(x)) return false;
  const marker = { x, label, learning_rate: change.learning_rate, momentum: change.momentum };
  const at = s.markers.findIndex((m) => m.x >= x);
  if (at === -1) s.markers.push(marker);
  else if (s.markers[at].x === x) s.markers[at] = marker;
  else s.markers.splice(at, 0, marker);
  return true;
}

/** A run's data as it starts (`config`: its settings), keeping what came up to epoch
 *  `keepThrough` of `old` when it goes on from that epoch's checkpoint (continued, or
 *  stepped). */
export function restartedSeries(old, config = null, keepThrough = null) {
  const s = newSeries();
  s.planned = config && Number.isFinite(config.epochs) ? config.epochs : 0;
  if (old && Number.isFinite(keepThrough) && keepThrough > 0) {
    const end = lowerBound(old.batchX, keepThrough + 1e-9);
    s.batchX = old.batchX.slice(0, end);
    s.batchLoss = old.batchLoss.slice(0, end);
    s.epochs = new Map([...old.epochs].filter(([epoch]) => epoch <= keepThrough));
    s.markers = old.markers.filter((m) => m.x <= keepThrough);
  }
  return s;
}

/** Where a batch or a live change sits on the x axis (epochs), or NaN. */
export function stepX(event) {
  const steps = event.steps > 0 ? event.steps : 1;
  return Number.isFinite(event.global_step) ? event.global_step / steps
    : (event.epoch - 1) + event.step / steps;
}

/** Binary search: index of the first element of sorted `xs` that is >= x. */
export function lowerBound(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Series of different x, aligned on the union of their x values (what uPlot draws):
 *  [{xs: sorted numbers, ys}] -> [xs, ys0, ys1, ...], null where a series has no point. */
export function align(list) {
  let total = 0;
  for (const s of list) total += s.xs.length;
  const all = new Float64Array(total);
  let k = 0;
  for (const s of list) for (const x of s.xs) all[k++] = x;
  all.sort();
  const xs = [];
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) xs.push(all[i]);
  const data = [xs];
  for (const s of list) {
    const ys = new Array(xs.length).fill(null);
    let j = 0;
    for (let i = 0; i < s.xs.length; i++) {
      while (xs[j] < s.xs[i]) j++;
      ys[j] = s.ys[i];
    }
    data.push(ys);
  }
  return data;
}

/** Bring run data `s`'s smoothed batch loss up to date: an exponential moving average,
 *  bias-corrected like TensorBoard's, of factor `smoothing`; incremental. */
export function updateSmoothed(s, smoothing) {
  if (s.smoothedValid > s.batchLoss.length) s.smoothedValid = 0;
  if (s.smoothed.length !== s.batchLoss.length) s.smoothed.length = s.batchLoss.length;
  let ema = 0;
  let weight = 0;
  // Restart from the last good point's state.
  if (s.smoothedValid > 0) {
    ema = s.smoothState.ema;
    weight = s.smoothState.weight;
  }
  for (let i = s.smoothedValid; i < s.batchLoss.length; i++) {
    const v = s.batchLoss[i];
    if (Number.isFinite(v)) {
      ema = smoothing * ema + (1 - smoothing) * v;
      weight = smoothing * weight + (1 - smoothing);
      s.smoothed[i] = weight > 0 ? ema / weight : v;
    } else {
      s.smoothed[i] = null;
    }
  }
  s.smoothState = { ema, weight };
  s.smoothedValid = s.batchLoss.length;
}

/** One figure of every epoch of run data `s`: {xs, ys} for `align`. */
export function epochColumn(s, key) {
  const xs = [...s.epochs.keys()].sort((a, b) => a - b);
  return { xs, ys: xs.map((x) => s.epochs.get(x)?.[key] ?? null) };
}

/** Whether some epoch of run data `s` has figure `key` (a run measured on people's
 *  drawings has `drawings_accuracy`). */
export function hasEpochFigure(s, key) {
  for (const record of s.epochs.values()) if (Number.isFinite(record?.[key])) return true;
  return false;
}

/** At most about `maxPoints` of a long series, for drawing: a chart a few hundred pixels
 *  wide cannot show more, and drawing thousands of points 5 times a second was most of
 *  a slow phone's time (issue 13). `envelope`: each bucket's lowest and highest point
 *  (the noisy batch loss keeps its spread); otherwise each bucket's last point (the
 *  smoothed loss). A bucket with no finite value gives one gap (null). */
export function decimate(xs, ys, maxPoints, envelope = false) {
  const n = xs.length;
  if (n <= maxPoints || maxPoints < 4) return { xs, ys };
  const buckets = envelope ? Math.floor(maxPoints / 2) : maxPoints;
  const size = Math.ceil(n / buckets);
  const outX = [];
  const outY = [];
  for (let start = 0; start < n; start += size) {
    const end = Math.min(n, start + size);
    if (!envelope) {
      let i = end - 1;
      while (i > start && !Number.isFinite(ys[i])) i--;
      outX.push(xs[i]);
      outY.push(Number.isFinite(ys[i]) ? ys[i] : null);
      continue;
    }
    let lo = -1;
    let hi = -1;
    for (let i = start; i < end; i++) {
      const v = ys[i];
      if (!Number.isFinite(v)) continue;
      if (lo < 0 || v < ys[lo]) lo = i;
      if (hi < 0 || v > ys[hi]) hi = i;
    }
    if (lo < 0) {
      outX.push(xs[start]);
      outY.push(null);
    } else if (lo === hi) {
      outX.push(xs[lo]);
      outY.push(ys[lo]);
    } else {
      const [a, b] = lo < hi ? [lo, hi] : [hi, lo];
      outX.push(xs[a], xs[b]);
      outY.push(ys[a], ys[b]);
    }
  }
  return { xs: outX, ys: outY };
}
