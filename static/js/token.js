// The token dialog: asks for the server's token (CNN_LIVE_TOKEN) when a request needs it.
// A <dialog> with a password field, not window.prompt; api.js decides when to ask.

/** Returns ask(message) => Promise<token or null (cancelled)>. */
export function createTokenDialog({ dialog, form, input, message, cancel }) {
  let resolve = null;

  function finish(value) {
    const done = resolve;
    resolve = null;
    if (dialog.open) dialog.close();
    if (done) done(value);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      input.focus();
      return;
    }
    input.value = '';
    finish(token);
  });
  cancel.addEventListener('click', () => finish(null));
  dialog.addEventListener('cancel', (event) => {  // Escape
    event.preventDefault();
    finish(null);
  });

  return function ask(text) {
    if (resolve) finish(null);
    message.textContent = text;
    input.value = '';
    return new Promise((done) => {
      resolve = done;
      if (!dialog.open) dialog.showModal();
      input.focus();
    });
  };
}
