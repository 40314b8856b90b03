/**
 * Marks `p` as handled: work started early and awaited later (a pipelined or overlapped step) may
 * reject before anyone awaits it, which Node would report as an unhandled rejection. Awaiting the
 * returned promise still throws its error.
 */
export function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
