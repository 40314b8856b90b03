#!/usr/bin/env node
// The `inkan-conformance` command. Built by `npm run build` (tsc) into dist/.
import { main } from "../dist/cli.js";

process.exitCode = await main(process.argv.slice(2));
