#!/usr/bin/env node
// The `inkan` command. Built by `npm run build` (tsc) into dist/.
import { main } from "../dist/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
