// The goroscope command's entry: bin/goroscope.js runs it from the sources through tsx; the image runs the
// bundle of it (npm run build:js -> dist/goroscope.mjs) with plain node, without a TypeScript loader in memory.
import { main } from './cli.ts';

await main(process.argv);
