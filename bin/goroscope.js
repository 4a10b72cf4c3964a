#!/usr/bin/env node
// The goroscope command: TypeScript sources run through tsx's loader (the image runs dist/goroscope.mjs).
import { register } from 'tsx/esm/api';

register();
await import('../agent/src/main.ts');
