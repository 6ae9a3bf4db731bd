#!/usr/bin/env node
/**
 * The `wsengine` command (package.json `bin`). `wsengine hub [flags]` runs the hub service; `wsengine --help` lists
 * the commands. See {@link runCli}.
 *
 * @module
 */
import { runCli } from '../service/cli.js';

const status = await runCli(process.argv.slice(2), process.env);
if (status !== undefined) process.exitCode = status;
