import { describe, expect, it } from 'vitest';
import { formatAgo, formatBytes, formatDuration, formatMetric, formatPercent, formatRate, parseDuration, ratioPercent } from '../src/format';

describe('formatBytes', () => {
  it('uses IEC units with sensible precision', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(256 * 1024 * 1024)).toBe('256 MiB');
    expect(formatBytes(10.5 * 1024 ** 3)).toBe('10.5 GiB');
    expect(formatBytes(3 * 1024 ** 4)).toBe('3 TiB');
  });
  it('shows a dash for unknown values', () => {
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(Number.NaN)).toBe('—');
  });
  it('formats rates', () => {
    expect(formatRate(2 * 1024 * 1024)).toBe('2 MiB/s');
    expect(formatRate(undefined)).toBe('—');
  });
});

describe('formatPercent', () => {
  it('rounds to the given digits', () => {
    expect(formatPercent(42.345)).toBe('42.3 %');
    expect(formatPercent(99.96, 0)).toBe('100 %');
    expect(formatPercent(null)).toBe('—');
  });
  it('computes ratios only with a total', () => {
    expect(ratioPercent(1, 4)).toBe(25);
    expect(ratioPercent(1, 0)).toBeNull();
  });
});

describe('durations', () => {
  it('formats with the two most significant units', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(45_000)).toBe('45s');
    expect(formatDuration(3_900_000)).toBe('1h 5m');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(90_000_000)).toBe('1d 1h');
    expect(formatDuration(null)).toBe('—');
  });
  it('formats relative times', () => {
    expect(formatAgo(0, 1000)).toBe('never');
    expect(formatAgo(1_000_000 - 300_000, 1_000_000)).toBe('5m ago');
    expect(formatAgo(1_000_000 + 60_000, 1_000_000)).toBe('in 1m');
  });
  it('parses durations typed by people', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('1h 30m')).toBe(5400);
    expect(parseDuration('2d')).toBe(172_800);
    expect(parseDuration('soon')).toBeNull();
    expect(parseDuration('1h30x')).toBeNull();
    expect(parseDuration('')).toBeNull();
  });
});

describe('formatMetric', () => {
  it('follows the API unit', () => {
    expect(formatMetric('percent', 12.34)).toBe('12.3 %');
    expect(formatMetric('bytes_per_second', 1024)).toBe('1 KiB/s');
    expect(formatMetric('bytes', 2048)).toBe('2 KiB');
    expect(formatMetric('load', 1.234)).toBe('1.23');
    expect(formatMetric('count', 12)).toBe('12');
  });
});
