import { readFileSync } from "node:fs";
import { loadavg } from "node:os";

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

/** A workload's figure against the raw figure measured just before and just after it (issue 20). */
export interface Bracketed {
  figure: number;
  rawBefore: number;
  rawAfter: number;
  /** figure / mean(rawBefore, rawAfter). */
  ratio: number;
  /** 1-minute load average when the raw figure before began, and when the one after ended. */
  loadStart: number;
  loadEnd: number;
  /** The largest minus the smallest load average sampled over the three runs. */
  loadChange: number;
  /** loadChange above {@link unreliableLoadChange}: the ratio compares unlike conditions. */
  unreliable: boolean;
}

/** How far the 1-minute load average may move during a bracketed run before its ratio is marked unreliable. */
export const unreliableLoadChange = 1.0;

/**
 * Issue 20: a ratio that survives a shared machine. The raw denominator is measured right before
 * and right after the workload and the figure divided by their mean, so a load that rises or falls
 * during the run moves numerator and denominator alike; when the load (sampled through the three
 * runs, `loads` in order) still moved by more than 1.0, the ratio is marked unreliable.
 */
export function bracket(figure: number, rawBefore: number, rawAfter: number, loads: readonly number[]): Bracketed {
  if (!(rawBefore > 0 && rawAfter > 0)) throw new RangeError("a raw figure must be positive");
  if (loads.length === 0) throw new RangeError("no load samples");
  const ratio = figure / ((rawBefore + rawAfter) / 2);
  const loadChange = Math.max(...loads) - Math.min(...loads);
  return { figure, rawBefore, rawAfter, ratio, loadStart: loads[0]!, loadEnd: loads[loads.length - 1]!, loadChange, unreliable: loadChange > unreliableLoadChange };
}

/** Samples the 1-minute load average every `everyMs` until stop(), which returns the samples (at least the first and last). */
export function watchLoad(everyMs = 1_000): { stop(): number[] } {
  const samples = [loadavg()[0]!];
  const timer = setInterval(() => samples.push(loadavg()[0]!), everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      samples.push(loadavg()[0]!);
      return samples;
    },
  };
}

/** The machine's CPU time since boot, all CPUs (clock ticks): idle (idle + iowait) and in all. */
export interface MachineCpu {
  idle: number;
  total: number;
}

/**
 * The first line of Linux's /proc/stat ("cpu  user nice system idle iowait irq softirq steal ...");
 * undefined where there is none (another OS). Guest time is already inside user and nice.
 */
export function machineCpu(stat: () => string = () => readFileSync("/proc/stat", "utf8")): MachineCpu | undefined {
  let line: string | undefined;
  try {
    line = stat().split("\n", 1)[0];
  } catch {
    return undefined;
  }
  const fields = line?.match(/^cpu\s+(.*)$/)?.[1]?.trim().split(/\s+/).slice(0, 8).map(Number);
  if (!fields || fields.length < 5 || fields.some((f) => !Number.isFinite(f))) return undefined;
  return { idle: fields[3]! + fields[4]!, total: fields.reduce((a, b) => a + b, 0) };
}

/**
 * Issue 20: the share of the machine's CPU time left idle between two samples, in per cent (a
 * workload that leaves cores idle is bound by waiting, not by CPU); undefined without both samples
 * or without elapsed ticks.
 */
export function idlePercent(before: MachineCpu | undefined, after: MachineCpu | undefined): number | undefined {
  if (!before || !after) return undefined;
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.idle - before.idle)) / total : undefined;
}

/** A thread's scheduler times (Linux): nanoseconds on a CPU, and runnable but waiting for one. */
export interface ThreadCpu {
  runNs: number;
  waitNs: number;
}

/**
 * The calling thread's /proc/thread-self/schedstat ("<ns on a CPU> <ns waiting on a run queue>
 * <timeslices>"); undefined where there is none (another OS, a kernel without schedstats).
 */
export function threadCpu(read: () => string = () => readFileSync("/proc/thread-self/schedstat", "utf8")): ThreadCpu | undefined {
  let fields: number[];
  try {
    fields = read().trim().split(/\s+/).map(Number);
  } catch {
    return undefined;
  }
  if (fields.length < 2 || fields.slice(0, 2).some((f) => !Number.isSafeInteger(f) || f < 0)) return undefined;
  return { runNs: fields[0]!, waitNs: fields[1]! };
}

/** A thread over a window: its share of the wall time on a CPU and waiting for one (per cent), and its CPU per item (µs). */
export interface ThreadShare {
  busyPct: number;
  runqWaitPct: number;
  cpuUsPerItem: number;
}

/**
 * Issue 20: what one thread did during a measured window of `wallMs` in which `items` were done;
 * undefined without both samples, elapsed time or items. A serial thread busy (plus waiting) most
 * of the window is the workload's bound, however idle the machine's other cores are.
 */
export function threadShare(before: ThreadCpu | undefined, after: ThreadCpu | undefined, wallMs: number, items: number): ThreadShare | undefined {
  if (!before || !after || !(wallMs > 0) || !(items > 0)) return undefined;
  const runNs = after.runNs - before.runNs;
  const waitNs = after.waitNs - before.waitNs;
  if (runNs < 0 || waitNs < 0) return undefined; // not the same thread
  const wallNs = wallMs * 1e6;
  return { busyPct: (100 * runNs) / wallNs, runqWaitPct: (100 * waitNs) / wallNs, cpuUsPerItem: runNs / 1e3 / items };
}
