// Dark mode that follows TensorBoard: its app toggles the class `dark-mode` on its own <body> (the
// dark-mode-supporter component: its header toggle, or the browser's prefers-color-scheme when set to follow it).
// The tab's iframe is same-origin with TensorBoard's page, so it watches that class; opened on its own it follows
// prefers-color-scheme.

/**
 * TensorBoard's <body> when the tab runs in its iframe, else null.
 * @param {!Window} win
 * @return {?HTMLElement}
 */
function tensorBoardBody(win) {
  try {
    return win.parent !== win ? win.parent.document.body : null;
  } catch {
    return null; // another origin embeds the tab: no access to its document
  }
}

/**
 * Keeps `dark` on the tab's <html> in step with TensorBoard's theme.
 * @param {!Window} win the iframe's window
 */
export function followTheme(win) {
  const root = win.document.documentElement;
  const body = tensorBoardBody(win);
  if (body) {
    const apply = () => root.classList.toggle('dark', body.classList.contains('dark-mode'));
    new win.MutationObserver(apply).observe(body, {attributes: true, attributeFilter: ['class']});
    apply();
    return;
  }
  const query = win.matchMedia('(prefers-color-scheme: dark)');
  const apply = () => root.classList.toggle('dark', query.matches);
  query.addEventListener('change', apply);
  apply();
}
