// Teach now (issue 15): available from the server's min_drawings labelled drawings on,
// it fine-tunes the model that answers the pad on them (POST /api/drawings/teach), then
// says what it read before and after, on the person's held-out drawings and on MNIST's
// test images. Its run is a run like any other (on the charts, followed by the panels);
// main.js hands this module its epoch and its end, whose figures are the "after" (the
// answer to POST gives "before", also drawn on the charts at epoch 0: the teaching
// run's lines go from before to after).

import { api } from './api.js';
import { isUnavailable, setUnavailable } from './buttons.js';
import { describeModel } from './draw-answer.js';
import { formatInteger, formatPercent } from './format.js';
import { describeFailure, describeScore } from './drawings-text.js';

/**
 * @param {object} options
 * @param {object} options.elements  button, note, result
 * @param {ReturnType<import('./draw.js').createDraw>} options.draw  which model answers the pad
 * @param {(runId: string) => void} [options.onTaught]  a teaching run started
 * @param {(record: object) => void} [options.onBefore]  the teaching run's figures before
 *   it trained, as an epoch 0 record (for the charts: its lines start from them)
 * @param {(id: string) => string} [options.nameOf]  a run's name
 */
export function createTeachPanel({ elements: teach, draw, onTaught = null, onBefore = null, nameOf = null }) {
  let total = 0;         // drawings kept (the gallery's count)
  let minDrawings = 10;  // the server's least for Teach now
  let version = 0;       // bumped at every change shown (the tests' hook)
  let taught = null;     // {runId, state, before, beforeTest, after, message}

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

  return {
    /** The drawings kept changed: Teach now may have become available. */
    setCounts(kept, least) {
      total = kept;
      minDrawings = least;
      showTeachButton();
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
    /** For the tests: the teaching run, if any. */
    state: () => ({
      version,
      teach: taught ? { runId: taught.runId, state: taught.state, after: Boolean(taught.after) } : null,
    }),
  };
}
