import { describe, expect, it } from 'vitest';
import { mergeSeries, SeriesBuffer } from '../src/series';

const p = (t: number, avg: number, max = avg) => ({ timestamp_ms: t, avg, max });

describe('mergeSeries', () => {
  it('sorts by time and lets live points replace history at the same timestamp', () => {
    const merged = mergeSeries([p(1000, 1), p(3000, 3), p(2000, 2)], [p(3000, 30), p(4000, 4)]);
    expect(merged.map((x) => [x.timestamp_ms, x.avg])).toEqual([[1000, 1], [2000, 2], [3000, 30], [4000, 4]]);
  });
  it('drops non-finite points', () => {
    expect(mergeSeries([p(1000, Number.NaN)], [p(Number.NaN, 1)])).toEqual([]);
  });
});

describe('SeriesBuffer', () => {
  it('loads history, then appends live points in order', () => {
    const b = new SeriesBuffer(60_000);
    b.load([p(10_000, 1), p(20_000, 2)]);
    expect(b.length).toBe(2);
    expect(b.append(p(30_000, 3))).toBe(true);
    expect(b.length).toBe(3);
    expect(b.lastTimestamp).toBe(30_000);
    expect(b.append(p(30_000, 33))).toBe(true); // same timestamp: replaced
    expect(b.length).toBe(3);
    expect(b.latest?.avg).toBe(33);
    b.append(p(15_000, 1.5)); // late point: merged in order
    expect(b.data()[0]).toEqual([10, 15, 20, 30]);
    expect(b.append(p(Number.NaN, 1))).toBe(false);
  });
  it('keeps points appended before the history arrived', () => {
    const b = new SeriesBuffer(60_000);
    b.append(p(50_000, 5));
    b.load([p(10_000, 1), p(50_000, 4)]);
    expect(b.data()[1]).toEqual([1, 5]); // the live sample wins over the history bucket
  });
  it('gives uPlot columns in seconds with max as a second series', () => {
    const b = new SeriesBuffer(60_000);
    b.load([p(1000, 1, 2), { timestamp_ms: 2000, avg: 3, max: Number.NaN }]);
    expect(b.data()).toEqual([[1, 2], [1, 3], [2, null]]);
  });
  it('trims old points with slack so the count still grows with live data', () => {
    const b = new SeriesBuffer(100_000);
    b.load([p(0, 0), p(50_000, 1), p(100_000, 2)]);
    b.trim(120_000); // oldest is 1.2 windows old: kept
    expect(b.length).toBe(3);
    b.append(p(160_000, 3));
    b.trim(160_000); // oldest is 1.6 windows old: cut back to the window
    expect(b.data()[0]).toEqual([100, 160]);
  });
});
