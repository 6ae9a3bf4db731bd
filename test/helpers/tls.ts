/**
 * A throw-away TLS certificate for `localhost` and 127.0.0.1 (openssl, P-256, valid one day) in a fresh temporary
 * folder, for tests and benches that serve HTTPS / HTTP/2.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  /** The folder holding cert.pem and key.pem. */
  dir: string;
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
  /** base64 SHA-256 of the certificate's public key (SPKI), for Chromium's `--ignore-certificate-errors-spki-list`. */
  spki: string;
  /** Deletes the folder. */
  remove(): void;
}

/** Makes a self-signed certificate for `localhost` / 127.0.0.1. Throws when openssl is missing. */
export function testCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-tls-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const cert = readFileSync(certPath);
  const key = readFileSync(keyPath);
  const spki = createHash('sha256').update(new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return { dir, certPath, keyPath, cert, key, spki, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
