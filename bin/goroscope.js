#!/usr/bin/env node
// The goroscope command: TypeScript sources run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../agent/src/cli.ts');
await main(process.argv);
