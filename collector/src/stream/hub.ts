// Fans committed records out to live-stream subscribers.
import type { AgentRecord } from '../protocol/records.ts';

export type RecordKind = AgentRecord['kind'];

export interface StreamFilter {
  kinds: Set<RecordKind>;
  node?: string;
  pid?: number;
}

export interface StreamEvent {
  type: 'record';
  node: string;
  agentId: string;
  record: AgentRecord;
}

export interface Subscriber {
  filter: StreamFilter;
  /** Returns false when the subscriber is too slow and the event was dropped. */
  send(events: StreamEvent[]): boolean;
}

export class StreamHub {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly onDrop: (n: number) => void = () => {}) {}

  get size(): number {
    return this.subscribers.size;
  }

  subscribe(s: Subscriber): () => void {
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }

  /** Called after a batch commits; never before, so a streamed record is always stored. */
  publish(agentId: string, node: string, records: AgentRecord[]): void {
    for (const s of this.subscribers) {
      const { kinds, node: wantNode, pid } = s.filter;
      if (wantNode !== undefined && wantNode !== node) continue;
      const events: StreamEvent[] = [];
      for (const record of records) {
        if (!kinds.has(record.kind)) continue;
        if (pid !== undefined && (!('pid' in record) || record.pid !== pid)) continue;
        events.push({ type: 'record', node, agentId, record });
      }
      if (events.length && !s.send(events)) this.onDrop(events.length);
    }
  }
}
