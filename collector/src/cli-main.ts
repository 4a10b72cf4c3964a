// Standalone entry: node --import tsx collector/src/cli-main.ts --listen HOST:PORT --db FILE
import { CommanderError } from 'commander';
import { collectorCommand } from './cli.ts';

collectorCommand(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`goroscope collector: ${(err as Error).message}\n`);
  process.exit(1);
});
