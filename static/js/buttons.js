// Buttons that cannot act now (a request pending, a run in the wrong state) say so with
// aria-disabled rather than `disabled`: a disabled button drops the keyboard's focus on
// the page (where Space then scrolls instead of pressing the button again), an
// aria-disabled one keeps it. Their handlers ignore presses while they say so.

/** Mark `button` unavailable (or available again). */
export function setUnavailable(button, unavailable) {
  if (!button) return;
  if (unavailable) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
}

/** A new <button type="button"> of class `className` showing `text`; `label`, when
 *  given, names it (for a symbol such as "×") and is its tooltip. */
export function newButton(className, text = '', label = '') {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = className;
  button.textContent = text;
  if (label) {
    button.setAttribute('aria-label', label);
    button.title = label;
  }
  return button;
}

/** Whether `button` says it cannot act now. */
export const isUnavailable = (button) => button?.getAttribute('aria-disabled') === 'true';
