// Issue 16: TLS for the collector's HTTP and WebSocket (--tls-cert, --tls-key) with the agent checking the
// certificate (--ca); the collector's database files and the spool private; --no-auth said at every start.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startCollector } from '../../collector/src/server.ts';
import { Shipper } from '../../agent/src/ship/shipper.ts';
import { API_TOKEN, INGEST_TOKEN, pause, tempDir, testCollector } from '../collector/helpers.ts';
import { startCollectorProcess } from '../lib/collector-process.ts';

/** A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA. */
function certificates(dir: string) {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=goroscope test CA');
  ssl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=someone else');
  ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  const read = (f: string) => readFileSync(join(dir, f));
  return { ca: read('ca.pem'), other: read('other.pem'), cert: read('server.pem'), key: read('server.key') };
}

const noOpenssl = spawnSync('openssl', ['version']).status === 0 ? undefined : 'openssl is not installed';

t.test('TLS: HTTPS and wss:// with the certificate checked by the agent', { skip: noOpenssl ?? false }, async (t) => {
  const pem = certificates(tempDir(t));
  const c = await testCollector(t, { tls: { cert: pem.cert, key: pem.key } });
  t.match(c.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the collector serves HTTPS');
  const status = await new Promise<number>((resolve, reject) => {
    get(`${c.url}/api/v1/nodes`, { ca: pem.ca, headers: { authorization: `Bearer ${API_TOKEN}` } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    }).on('error', reject);
  });
  t.equal(status, 200, 'the API over HTTPS');

  const ship = async (ca: Buffer | undefined, url = c.url) => {
    const logs: string[] = [];
    const s = new Shipper({ url, token: INGEST_TOKEN, node: 'n', agentVersion: 'test', ca, log: (m) => logs.push(m) });
    s.start();
    s.send([pause(9, Math.floor(Math.random() * 1e9))]);
    const ok = await s.flush(2500);
    s.close();
    return { ok, error: s.stats.lastError ?? '', logs };
  };
  t.ok((await ship(pem.ca)).ok, 'an agent with --ca of the signing CA ships');
  const wrong = await ship(pem.other);
  t.notOk(wrong.ok, 'an agent with another CA does not');
  t.match(wrong.error, /certificate|self.signed|verify/i, `it says why: ${wrong.error}`);
  t.ok(wrong.logs.some((l) => /unreachable/.test(l)), 'in its log');
  t.notOk((await ship(undefined)).ok, 'nor one trusting only the system CAs');
  t.notOk((await ship(pem.ca, c.url.replace('https', 'http'))).ok, 'plain ws:// to a TLS collector does not connect');

  const stream = new WebSocket(`${c.url.replace('https', 'wss')}/api/v1/stream`, { ca: pem.ca, headers: { authorization: `Bearer ${API_TOKEN}` } });
  t.equal(await new Promise((r) => { stream.once('open', () => r('open')); stream.once('error', (e) => r(e.message)); }), 'open', 'the live stream over wss://');
  stream.close();
  await c.idle();
  t.equal((c.db.prepare('SELECT count(*) AS n FROM pauses').get() as { n: number }).n, 1, 'only the trusting agent stored');
});

t.test('the database, its WAL and a directory made for it are private', async (t) => {
  const dir = join(tempDir(t), 'made', 'for', 'it');
  const c = await testCollector(t, { db: join(dir, 'collector.db') });
  const { TestAgent } = await import('../collector/helpers.ts');
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [pause(1, 1)]);
  a.close();
  t.equal(statSync(dir).mode & 0o777, 0o700, 'directory 0700');
  const files = readdirSync(dir);
  t.ok(files.includes('collector.db-wal') && files.includes('collector.db-shm'), `WAL files there: ${files}`);
  for (const f of files) t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} 0600`);
});

t.test('--no-auth is said at every start, naming what is open', async (t) => {
  for (const [tokens, expect] of [
    [{}, [/ingest endpoint takes batches from any process/, /API, the live stream and \/metrics answer any process/]],
    [{ apiToken: API_TOKEN }, [/ingest endpoint/]],
    [{ ingestToken: INGEST_TOKEN }, [/the API/]],
  ] as const) {
    for (let start = 0; start < 2; start++) {
      const warnings: string[] = [];
      const c = await startCollector({ listen: '127.0.0.1:0', db: join(tempDir(t), 'c.db'), noAuth: true, ...tokens, warn: (m) => warnings.push(m) });
      await c.close();
      t.equal(warnings.length, expect.length, `start ${start + 1} with ${Object.keys(tokens).join(', ') || 'no tokens'}: ${warnings.join(' | ')}`);
      expect.forEach((re, i) => t.match(warnings[i], re));
    }
  }
  // The command line: on stderr, one line each, before it listens.
  const { proc } = await startCollectorProcess({ db: join(tempDir(t), 'd.db'), ingestToken: '', apiToken: '', args: ['--no-auth'], t });
  t.pass('it runs');
  t.match(proc.err, /^goroscope collector: warning: --no-auth: the ingest endpoint/m, 'and stderr says it');
  proc.kill();
  const bad = spawnSync(process.execPath, ['bin/goroscope.js', 'collector', '--listen', '127.0.0.1:0', '--db', join(tempDir(t), 'e.db'), '--no-auth', '--tls-cert', 'x.pem'],
    { encoding: 'utf8', timeout: 30_000 });
  t.equal(bad.status, 1, '--tls-cert alone is refused');
  t.match(bad.stderr, /--tls-cert and --tls-key go together/);
});
