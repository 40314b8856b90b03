// Worker-thread entry that runs a TypeScript module of this repository: registers ts-hooks.mjs in
// this thread, then imports `workerData.entry` (a file URL to a .ts file). Test support only.
import { register } from "node:module";
import { workerData } from "node:worker_threads";

register("./ts-hooks.mjs", import.meta.url);
await import(workerData.entry);
