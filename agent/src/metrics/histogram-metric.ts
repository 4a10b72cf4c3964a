// A Prometheus histogram whose series are read, when scraped, from counts the agent keeps itself: prom-client's
// Histogram takes one observation at a time, with its labels hashed each time, and these are counted per record.
export interface HistogramSeries {
  labels: Record<string, string>;
  /** Samples at or below each bound, cumulative. */
  cumulative: ArrayLike<number>;
  count: number;
  sum: number;
}

/** The metric to pass to Registry.registerMetric; `bounds` are the `le` values, in the metric's unit. */
export function histogramMetric(name: string, help: string, bounds: readonly number[], series: () => Iterable<HistogramSeries>) {
  return {
    name,
    help,
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      for (const s of series()) {
        for (let i = 0; i < bounds.length; i++) values.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: bounds[i] }, value: s.cumulative[i] });
        values.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: s.count });
        values.push({ metricName: `${name}_sum`, labels: s.labels, value: s.sum });
        values.push({ metricName: `${name}_count`, labels: s.labels, value: s.count });
      }
      return { name, help, type: 'histogram' as const, values, aggregator: 'sum' as const };
    },
    reset() {},
  };
}
