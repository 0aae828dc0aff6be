// A chart's data: history from the JSON query, then live points from the
// SSE stream, merged by timestamp (unit-tested in test/series.test.ts).

import type { MetricPoint } from './types';

/**
 * Merges points into one series sorted by time; a later point with the same
 * timestamp replaces the earlier one (a live sample supersedes the history
 * bucket it lands on). Non-finite values are dropped.
 */
export function mergeSeries(history: MetricPoint[], live: MetricPoint[]): MetricPoint[] {
  const byTime = new Map<number, MetricPoint>();
  for (const p of [...history, ...live]) {
    if (!Number.isFinite(p.timestamp_ms) || !Number.isFinite(p.avg)) continue;
    byTime.set(p.timestamp_ms, p);
  }
  return [...byTime.values()].sort((a, b) => a.timestamp_ms - b.timestamp_ms);
}

/** uPlot's columnar data: x in seconds, then avg and max. */
export type ChartData = [number[], (number | null)[], (number | null)[]];

/** A time window of points, kept sorted, for one chart. */
export class SeriesBuffer {
  private points: MetricPoint[] = [];

  constructor(private windowMs: number) {}

  setWindow(windowMs: number): void {
    this.windowMs = windowMs;
  }

  clear(): void {
    this.points = [];
  }

  /** Replaces the contents with history (merged with anything already appended). */
  load(history: MetricPoint[]): void {
    this.points = mergeSeries(history, this.points);
  }

  /**
   * Adds a point. In order (the usual case) it is pushed; a point at a known
   * timestamp replaces it; an older one is merged in. Returns true when the
   * series changed.
   */
  append(point: MetricPoint): boolean {
    if (!Number.isFinite(point.timestamp_ms) || !Number.isFinite(point.avg)) return false;
    const last = this.points[this.points.length - 1];
    if (!last || point.timestamp_ms > last.timestamp_ms) {
      this.points.push(point);
    } else if (point.timestamp_ms === last.timestamp_ms) {
      this.points[this.points.length - 1] = point;
    } else {
      this.points = mergeSeries(this.points, [point]);
    }
    return true;
  }

  /**
   * Drops points older than the window before `nowMs`, with slack: nothing
   * is dropped until the oldest point is 1.5 windows old, so the count does
   * not sit still while live points arrive at the rate old ones expire (the
   * chart's x range shows only the window either way).
   */
  trim(nowMs: number): void {
    if (!this.points.length || this.points[0].timestamp_ms >= nowMs - this.windowMs * 1.5) return;
    const cutoff = nowMs - this.windowMs;
    let drop = 0;
    while (drop < this.points.length && this.points[drop].timestamp_ms < cutoff) drop += 1;
    if (drop > 0) this.points = this.points.slice(drop);
  }

  get length(): number {
    return this.points.length;
  }

  get lastTimestamp(): number | null {
    return this.points.length ? this.points[this.points.length - 1].timestamp_ms : null;
  }

  get latest(): MetricPoint | null {
    return this.points.length ? this.points[this.points.length - 1] : null;
  }

  data(): ChartData {
    const xs: number[] = [];
    const avg: (number | null)[] = [];
    const max: (number | null)[] = [];
    for (const p of this.points) {
      xs.push(p.timestamp_ms / 1000);
      avg.push(p.avg);
      max.push(Number.isFinite(p.max) ? p.max : null);
    }
    return [xs, avg, max];
  }
}
