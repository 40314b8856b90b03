import { pino, type Logger } from "pino";

/**
 * Structured JSON logs on stderr (stdout is kept for what the CLI prints). Logs never carry a
 * message body; the redaction below is a second line of defence for fields named like secrets.
 */
export function createLogger(level: string, destination: number | NodeJS.WritableStream = 2): Logger {
  return pino(
    {
      level,
      base: { service: "inkan" },
      redact: {
        paths: ["*.pin", "*.sad", "*.rSad", "*.sadToken", "*.token", "*.activationCode", "*.privateKey", "*.authorization"],
        censor: "[redacted]",
      },
    },
    typeof destination === "number" ? pino.destination({ fd: destination, sync: false }) : destination,
  );
}
