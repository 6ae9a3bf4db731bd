/**
 * The command line of `wsengine`: subcommand dispatch, configuration errors (one line, exit status 2), the
 * development banner, and graceful shutdown on SIGTERM / SIGINT (close 1001, drain, exit 0).
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { ConfigError, helpText, parseConfig } from './config.js';
import { createLogger } from './log.js';
import { startService } from './service.js';

const USAGE = `Usage: wsengine <command> [flags]

Commands:
  hub       run the pub/sub hub service (wsengine hub --help for its flags)

Flags:
  --help    this text
  --version the package version`;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Runs the command line. Resolves with an exit status when the command ends by itself (help, bad configuration,
 * start-up failure), or with undefined once the service runs (the process then exits after a signal's graceful
 * shutdown).
 */
export async function runCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number | undefined> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command !== 'hub') {
    process.stderr.write(`wsengine: unknown command ${JSON.stringify(command)} (try: wsengine hub --help)\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseConfig({ argv: rest, env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`wsengine hub: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (parsed.help) {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  const log = createLogger();
  let service;
  try {
    service = await startService(parsed.config, { log });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`wsengine hub: ${error.message}\n`);
      return 2;
    }
    log('error', 'start_failed', { error: (error as Error).message });
    return 1;
  }
  if (service.banner) process.stdout.write(service.banner);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log('warn', 'forced_exit', { signal });
      process.exit(1);
    }
    stopping = true;
    log('info', 'shutdown', { signal });
    service.close({ code: 1001 }).then(
      () => {
        log('info', 'stopped');
        process.exit(0);
      },
      (error: Error) => {
        log('error', 'shutdown_failed', { error: error.message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return undefined;
}
