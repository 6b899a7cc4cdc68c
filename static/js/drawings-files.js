// The drawings as files (issue 15): exported (.npz, IDX) by the gallery's links, and
// imported from a file the person picks (POST /api/drawings/import). The links work as
// they are; with a token (which a link cannot send) the file is fetched with it and
// saved from a Blob.

import { api, getToken } from './api.js';
import { saveBlob } from './export.js';
import { describeFailure, plural, showStatus } from './drawings-text.js';

/**
 * @param {object} options
 * @param {object} options.elements  exports (the links), importInput, status (the
 *   gallery's status line)
 * @param {() => Promise<void>} options.onImported  drawings were added to the store
 */
export function createDrawingFiles({ elements: el, onImported }) {
  for (const link of el.exports) {
    link.addEventListener('click', async (event) => {
      if (!getToken()) return;
      event.preventDefault();
      try {
        saveBlob(await api('GET', link.getAttribute('href'), undefined, { blob: true }),
          link.getAttribute('download') || 'drawings');
      } catch (error) {
        showStatus(el.status, describeFailure(error, 'export the drawings'), true);
      }
    });
  }

  el.importInput.addEventListener('change', async () => {
    const file = el.importInput.files?.[0];
    if (!file) return;
    showStatus(el.status, `Importing ${file.name}…`);
    try {
      const answer = await api('POST', '/api/drawings/import', file);
      showStatus(el.status, `Imported ${plural(answer.imported, 'drawing')} from ${file.name}.`);
      await onImported();
    } catch (error) {
      showStatus(el.status, describeFailure(error, `import ${file.name}`), true);
    } finally {
      el.importInput.value = '';
    }
  });
}
