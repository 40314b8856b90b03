import { setFlagsFromString } from "node:v8";

/**
 * Issue 20: how far the SAM process's V8 heap may grow past what was live after the last full
 * collection before the next one, in percent. A SignStream allocates fast (every signature gets
 * its claim, its module calls, its audit record with two canonical JSON forms, its store rows)
 * while what stays live is small and flat: about 40 MiB of heap during a 100,000-hash stream
 * (measured after full collections, `npm run build && node server/dist/bench/stream-probe.js
 * --live`), nothing kept per hash. V8's default lets the old generation grow to about four times
 * the live data between full collections, which the bench saw as +90 MiB of RSS during the stream;
 * with 50% the same stream grows the RSS by under 20 MiB at about the same CPU time (the marking
 * runs concurrently and the live data is small).
 */
export const heapGrowingPercent = 50;

/**
 * Applies {@link heapGrowingPercent} to this process. Call it at the start of a process that
 * serves the SAM (`inkan serve`, the bench's SAM process), not from the library: tests and
 * embedders keep their own heap settings. V8 reads this flag at every full collection, so setting
 * it at run time takes effect from the next one.
 */
export function applyServerHeapPolicy(setFlags: (flags: string) => void = setFlagsFromString): void {
  setFlags(`--heap-growing-percent=${heapGrowingPercent}`);
}
