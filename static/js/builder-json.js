// The builder's JSON view (issue 14): the network as text, a layer a line, kept in step
// with the layer list both ways (the ConvNetJS way). Text that does not parse is marked
// (aria-invalid, the reason beside it) and kept as it is: the network stays the last one
// that parsed, and Start refuses it until it parses again.

import { formatSpec, parseSpec } from './builder-spec.js';

/**
 * @param {object} options
 * @param {HTMLTextAreaElement} options.textarea  the JSON view
 * @param {HTMLElement} options.errorEl  why the text does not parse
 * @param {(spec: object) => void} options.onParsed  the person's text is this network
 * @param {() => void} options.onUnparsable  the person's text is no network
 */
export function createJsonView({ textarea, errorEl, onParsed, onUnparsable }) {
  let error = '';         // the text does not parse: why

  function showError(text) {
    error = text;
    errorEl.textContent = text;
    errorEl.hidden = !text;
    if (text) textarea.setAttribute('aria-invalid', 'true');
    else textarea.removeAttribute('aria-invalid');
  }

  textarea.addEventListener('input', () => {
    const parsed = parseSpec(textarea.value);
    showError(parsed.error || '');
    if (parsed.error) onUnparsable();
    else onParsed(parsed.spec);
  });

  return {
    /** Show `spec` (changed in the layer list, or loaded). */
    write(spec) {
      textarea.value = formatSpec(spec);
      showError('');
    },
    /** Why the text does not parse ('' when it does). */
    error: () => error,
  };
}
