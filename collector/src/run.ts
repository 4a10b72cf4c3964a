// The collector's process lifecycle around startCollector: started by `goroscope collector` and cli-main.ts.
import { startCollector, type Collector, type CollectorOptions } from './server.ts';

export async function runCollector(options: CollectorOptions): Promise<Collector> {
  const collector = await startCollector(options);
  // Machine-readable so scripts and tests can find the port when --listen used port 0.
  process.stdout.write(`${JSON.stringify({ msg: 'collector listening', url: collector.url })}\n`);
  const stop = (signal: string) => {
    process.stderr.write(`collector: ${signal}, shutting down\n`);
    collector.close().then(() => process.exit(0), (err) => {
      process.stderr.write(`collector: shutdown failed: ${(err as Error).message}\n`);
      process.exit(1);
    });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  return collector;
}
