/**
 * `npm run bench -- --runs N` (issue 20): the whole bench N times, each figure reported as the
 * median of the runs with every run's value beside it. A shared machine makes single runs noisy;
 * the median of three quiet runs is the figure the README quotes.
 */

/** One run's figures as `--json` writes them (numbers, nulls, lists, nested objects). */
export type Figures = Record<string, unknown>;

/** A run is quiet when the 1-minute load average at its start is below this. */
export const quietLoad = 1.0;

/** Digits after the decimal point of `x` as printed (0 for whole numbers and exponent forms). */
const decimals = (x: number): number => /^-?\d+\.(\d+)$/.exec(String(x))?.[1]?.length ?? 0;

/**
 * The median of `values`. Of an even count, the mean of the middle two, with one digit more than
 * they have (6781.2 and 6762.9 give 6772.05, not 6772.049999999999).
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length % 2 === 1) return sorted[mid]!;
  const [a, b] = [sorted[mid - 1]!, sorted[mid]!];
  return Number(((a + b) / 2).toFixed(Math.min(15, Math.max(decimals(a), decimals(b)) + 1)));
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * One value out of each run's value of the same figure: numbers -> their median (runs where the
 * figure was not measured, null, are left out); booleans -> true if any run says true (an
 * `unreliable` flag stays raised); lists -> every element any run listed (e.g. unreliable ratios),
 * once each; objects -> the same, key by key; anything else (labels) -> the first run's value.
 */
export function combine(values: readonly unknown[]): unknown {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (present.length === 0) return null;
  if (present.every((v) => typeof v === "number")) return median(present);
  if (present.every((v) => typeof v === "boolean")) return present.some(Boolean);
  if (present.every(Array.isArray)) {
    const seen = new Map<string, unknown>();
    for (const list of present) for (const x of list) seen.set(JSON.stringify(x), x);
    return [...seen.values()];
  }
  if (present.every(isPlainObject)) {
    const keys = [...new Set(present.flatMap((o) => Object.keys(o)))];
    return Object.fromEntries(keys.map((k) => [k, combine(present.map((o) => o[k]))]));
  }
  return present[0];
}

/** The figures of several runs: the median (see {@link combine}) under each run's key names, plus `runs` with each run's full figures. */
export function medianOfRuns(runs: readonly Figures[]): Figures & { runs: Figures[] } {
  if (runs.length === 0) throw new RangeError("no runs");
  return { ...(combine(runs) as Figures), runs: [...runs] };
}

/**
 * One line per numeric top-level figure: its median, and each run's value in run order.
 * @example "stream_100k_sigs_per_s   5812.4   (5790.1, 5812.4, 5901.3)"
 */
export function summaryLines(runs: readonly Figures[]): string[] {
  const combined = medianOfRuns(runs);
  const keys = Object.keys(combined).filter((k) => typeof combined[k] === "number");
  const width = Math.max(0, ...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(width)}   ${String(combined[k]).padStart(9)}   (${runs.map((r) => (typeof r[k] === "number" ? String(r[k]) : "-")).join(", ")})`);
}

/** A warning when a run starts on a busy machine (not an error: the run goes on, marked by it), undefined when quiet. */
export function loadWarning(run: number, load1m: number): string | undefined {
  if (load1m < quietLoad) return undefined;
  return `warning: load average ${load1m.toFixed(2)} at the start of run ${run}: not a quiet run (a quiet run needs a 1-minute load average below ${quietLoad.toFixed(1)} at its start)`;
}

/** `--runs` as given on the command line: a whole number of at least 1 (default 1). */
export function parseRuns(text: string | undefined): number {
  if (text === undefined) return 1;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--runs must be a whole number of at least 1, not "${text}"`);
  return n;
}
