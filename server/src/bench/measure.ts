/** How many signatures a run produced, over how long, at what concurrency. */
export interface Throughput {
  signatures: number;
  seconds: number;
  perSecond: number;
  concurrency: number;
}

/**
 * Runs `concurrency` workers at once, each calling `op(worker)` again and again until `durationMs`
 * have passed; `op` returns how many signatures it produced (0: this worker has no work left).
 * The clock stops when the last call in flight at the deadline returns, so every signature
 * counted is inside the measured time.
 */
export async function forDuration(concurrency: number, durationMs: number, op: (worker: number) => Promise<number>): Promise<Throughput> {
  let signatures = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < deadline) {
        const n = await op(worker);
        if (n === 0) return;
        signatures += n;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { signatures, seconds, perSecond: signatures / seconds, concurrency };
}

/** The nearest-rank percentile (p in (0, 100]) of the samples: a value that was actually observed. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new RangeError("no samples");
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile out of range: ${p}`);
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
}

const mib = (bytes: number) => bytes / 2 ** 20;

/**
 * The peak resident set size (MiB) while `run` runs: sampled every `everyMs`, and the kernel's
 * high-water mark (resourceUsage().maxRSS) when that rose during the run, so a peak between two
 * samples is not missed. Also the RSS just before, to show the growth.
 */
export async function peakRss<T>(run: () => Promise<T>, everyMs = 20): Promise<{ result: T; peakMib: number; beforeMib: number }> {
  const before = process.memoryUsage.rss();
  const maxRssBefore = process.resourceUsage().maxRSS; // KiB
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), everyMs);
  try {
    const result = await run();
    peak = Math.max(peak, process.memoryUsage.rss());
    const maxRssAfter = process.resourceUsage().maxRSS;
    if (maxRssAfter > maxRssBefore) peak = Math.max(peak, maxRssAfter * 1024);
    return { result, peakMib: mib(peak), beforeMib: mib(before) };
  } finally {
    clearInterval(timer);
  }
}
