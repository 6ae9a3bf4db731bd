/**
 * One log line per notable event, in logfmt (`time=… level=info event=start url=…`), so both people and log
 * shippers can read it. Callers never pass tokens, keys or secrets; values are quoted and stripped of control
 * characters so a peer-supplied string cannot forge a line.
 *
 * @module
 */

/** Log severity. */
export type LogLevel = 'info' | 'warn' | 'error';

/** Writes one event line. */
export type Logger = (level: LogLevel, event: string, fields?: Readonly<Record<string, string | number | boolean | undefined>>) => void;

function formatValue(value: string | number | boolean): string {
  const text = String(value).replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 4000);
  return /^[\w.:/@+-]+$/.test(text) ? text : JSON.stringify(text);
}

/** A logger writing to `write` (default: standard output). */
export function createLogger(write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  return (level, event, fields = {}) => {
    let line = `time=${new Date().toISOString()} level=${level} event=${event}`;
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
    }
    write(`${line}\n`);
  };
}
