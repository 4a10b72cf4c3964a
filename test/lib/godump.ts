// Parses Go's own goroutine dump (runtime.Stack(buf, true)): the oracle the tests compare the agent with.

export interface DumpGoroutine {
  goid: number;
  /** What the dump prints in brackets: a wait reason ("chan receive") or a status ("running"). */
  state: string;
  createdBy: { function: string; file: string; line: number } | null;
  parentGoid: number | null;
  /** Function names of the frames, innermost first. */
  frames: string[];
}

export function parseGoroutineDump(text: string): DumpGoroutine[] {
  const out: DumpGoroutine[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.length > 0);
    // Go 1.27+ prints a goroutine's pprof labels after the brackets ("goroutine 7 [select] {k: v}:").
    const head = /^goroutine (\d+)(?: [^[]*)? \[([^\]]+)\](?: \{.*\})?:$/.exec(lines[0] ?? '');
    if (!head) continue;
    // "[chan receive, 5 minutes]", "[select, locked to thread]": the reason is before the first comma.
    const state = head[2].split(',')[0].trim();
    let createdBy: DumpGoroutine['createdBy'] = null;
    let parentGoid: number | null = null;
    const frames: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const c = /^created by (\S+)(?: in goroutine (\d+))?$/.exec(lines[i]);
      if (c) {
        const loc = /^\t(.*):(\d+)(?: \+0x[0-9a-f]+)?$/.exec(lines[i + 1] ?? '');
        createdBy = { function: c[1], file: loc ? loc[1] : '', line: loc ? Number(loc[2]) : 0 };
        parentGoid = c[2] ? Number(c[2]) : null;
        break;
      }
      if (!lines[i].startsWith('\t')) frames.push(lines[i].replace(/\(.*$/, ''));
    }
    out.push({ goid: Number(head[1]), state, createdBy, parentGoid, frames });
  }
  return out;
}
