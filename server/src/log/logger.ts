import { pino, type DestinationStream, type Logger } from "pino";
import { LogSink, type LogSinkOptions, type LogWriteStats } from "./log-sink.js";

const sinks = new WeakMap<Logger, LogSink>();

/**
 * Structured JSON logs on stderr (stdout is kept for what the CLI prints). Logs never carry a
 * message body; the redaction below is a second line of defence for fields named like secrets.
 * A file descriptor or path is written through a log sink that survives a failing destination (a
 * full disk, issue 17.3): lost lines are counted, reported when writing resumes ("log lines
 * dropped"), and readable with logWriteStats.
 */
export function createLogger(
  level: string,
  destination: number | string | NodeJS.WritableStream = 2,
  options: Omit<LogSinkOptions, "onResumed"> = {},
): Logger {
  const pinoOptions = {
    level,
    base: { service: "inkan" },
    redact: {
      paths: ["*.pin", "*.sad", "*.rSad", "*.sadToken", "*.token", "*.activationCode", "*.privateKey", "*.authorization"],
      censor: "[redacted]",
    },
  };
  if (typeof destination === "object") return pino(pinoOptions, destination as DestinationStream);
  let log: Logger | undefined;
  const sink = new LogSink(destination, {
    ...options,
    onResumed: (lost) => log?.warn(lost, "log lines dropped: the log could not be written for a while"),
  });
  log = pino(pinoOptions, sink);
  sinks.set(log, sink);
  return log;
}

/** What a logger made by createLogger lost to a failing destination; undefined for a stream it was given. */
export function logWriteStats(log: Logger): LogWriteStats | undefined {
  return sinks.get(log)?.stats();
}

/** Writes what a logger made by createLogger still buffers, as far as it can, and stops its retries. */
export function endLogger(log: Logger): void {
  sinks.get(log)?.end();
}
