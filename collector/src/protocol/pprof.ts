// Profiles as data and as the gzipped protobuf `go tool pprof` reads (github.com/google/pprof profile.proto),
// encoded with DataDog's pprof-format. One model serves the agent (`goroscope profile`) and the collector
// (profiles merged across processes and time): samples keyed by their stack and labels, values summed.
import { gzipSync } from 'node:zlib';
import { Function as PFunction, Label, Location, Line, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';

export interface ProfileFrame {
  function: string;
  file: string;
  line: number;
}

export interface ProfileSample {
  /** Innermost first. */
  frames: ProfileFrame[];
  /** One value per sample type. */
  values: number[];
  labels: Record<string, string>;
}

export type ProfileKind = 'goroutine' | 'block';

export interface ProfileData {
  kind: ProfileKind;
  sampleTypes: Array<{ type: string; unit: string }>;
  period: { type: string; unit: string; value: number };
  /** Wall-clock start, ms. */
  startMs: number;
  durationMs: number;
  samples: ProfileSample[];
  /** What the reader should know: where the numbers come from, what was estimated or scaled. */
  comments: string[];
}

export const SAMPLE_TYPES: Record<ProfileKind, ProfileData['sampleTypes']> = {
  goroutine: [{ type: 'goroutine', unit: 'count' }],
  block: [
    { type: 'contentions', unit: 'count' },
    { type: 'delay', unit: 'nanoseconds' },
  ],
};

export const PERIOD: Record<ProfileKind, ProfileData['period']> = {
  goroutine: { type: 'goroutine', unit: 'count', value: 1 },
  block: { type: 'contentions', unit: 'count', value: 1 },
};

const frameKey = (f: ProfileFrame) => `${f.function}\u0000${f.file}\u0000${f.line}`;

/** The key samples are merged on: the stack and the labels. */
export function sampleKey(s: Pick<ProfileSample, 'frames' | 'labels'>): string {
  const labels = Object.keys(s.labels)
    .sort()
    .map((k) => `${k}=${s.labels[k]}`)
    .join('\u0001');
  return `${s.frames.map(frameKey).join('\u0002')}\u0003${labels}`;
}

/** Sums samples with the same stack and labels (profiles of several processes or windows into one). */
export function mergeSamples(samples: Iterable<ProfileSample>): ProfileSample[] {
  const out = new Map<string, ProfileSample>();
  for (const s of samples) {
    const k = sampleKey(s);
    const have = out.get(k);
    if (have) for (let i = 0; i < s.values.length; i++) have.values[i] = (have.values[i] ?? 0) + s.values[i];
    else out.set(k, { frames: s.frames, values: [...s.values], labels: { ...s.labels } });
  }
  return [...out.values()];
}

/**
 * The profile as pprof's protobuf, gzipped. Each distinct frame (function, file, line) is a Location with one
 * Line, so `go tool pprof` needs no binary to symbolize it; numbers are exact integers.
 */
export function encodePprof(p: ProfileData): Buffer {
  const strings = new StringTable();
  const functions = new Map<string, PFunction>();
  const locations = new Map<string, Location>();
  const fnId = (f: ProfileFrame): number => {
    const k = `${f.function}\u0000${f.file}`;
    let fn = functions.get(k);
    if (!fn) {
      fn = new PFunction({ id: functions.size + 1, name: strings.dedup(f.function), systemName: strings.dedup(f.function), filename: strings.dedup(f.file) });
      functions.set(k, fn);
    }
    return Number(fn.id);
  };
  const locId = (f: ProfileFrame): number => {
    const k = frameKey(f);
    let loc = locations.get(k);
    if (!loc) {
      loc = new Location({ id: locations.size + 1, mappingId: 1, line: [new Line({ functionId: fnId(f), line: f.line })] });
      locations.set(k, loc);
    }
    return Number(loc.id);
  };
  const sampleType = p.sampleTypes.map((t) => new ValueType({ type: strings.dedup(t.type), unit: strings.dedup(t.unit) }));
  const samples = p.samples.map(
    (s) =>
      new Sample({
        locationId: s.frames.map(locId),
        value: s.values.map((v) => Math.round(v)),
        label: Object.entries(s.labels).map(([k, v]) => new Label({ key: strings.dedup(k), str: strings.dedup(v) })),
      }),
  );
  const profile = new Profile({
    sampleType,
    sample: samples,
    mapping: [new Mapping({ id: 1, filename: strings.dedup('goroscope'), hasFunctions: true, hasFilenames: true, hasLineNumbers: true, hasInlineFrames: true })],
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
    timeNanos: BigInt(Math.round(p.startMs)) * 1_000_000n,
    durationNanos: BigInt(Math.round(p.durationMs * 1e6)),
    periodType: new ValueType({ type: strings.dedup(p.period.type), unit: strings.dedup(p.period.unit) }),
    period: p.period.value,
    comment: p.comments.map((c) => strings.dedup(c)),
  });
  return gzipSync(profile.encode());
}
