import { startAgent } from './agent/src/agent/run.ts';
const agent = await startAgent({ collector: 'ws://127.0.0.1:1', pids: [1], overheadBudget: 0.02, full: true, intervalMs: 200, scanMs: 200, log: (m) => console.log('log', m) });
await new Promise((r) => setTimeout(r, 1000));
await agent.stop();
console.log('stopped');
