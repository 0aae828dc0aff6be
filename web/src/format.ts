// Pure formatting helpers (unit-tested in test/format.test.ts).

const DASH = '—';

/** 1536 → "1.5 KiB"; IEC units, as the CLI prints them. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const sign = bytes < 0 ? '-' : '';
  if (unit === 0) return `${sign}${Math.round(value)} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${trimZeros(value.toFixed(digits))} ${units[unit]}`;
}

/** Bytes per second as "1.2 MiB/s". */
export function formatRate(bytesPerSecond: number | null | undefined): string {
  const text = formatBytes(bytesPerSecond);
  return text === DASH ? text : `${text}/s`;
}

/** 42.345 → "42.3 %"; null or NaN → "—". */
export function formatPercent(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  return `${value.toFixed(digits)} %`;
}

/** used / total as a percentage, or null when the total is unknown. */
export function ratioPercent(used: number, total: number): number | null {
  if (!Number.isFinite(used) || !Number.isFinite(total) || total <= 0) return null;
  return (used / total) * 100;
}

/**
 * A duration in milliseconds, two most significant units:
 * 850 → "850 ms", 45_000 → "45s", 3_900_000 → "1h 5m", 90_000_000 → "1d 1h".
 */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${trimZeros((ms / 1000).toFixed(1))}s`;
  const totalSeconds = Math.floor(ms / 1000);
  const parts: [number, string][] = [
    [Math.floor(totalSeconds / 86_400), 'd'],
    [Math.floor((totalSeconds % 86_400) / 3600), 'h'],
    [Math.floor((totalSeconds % 3600) / 60), 'm'],
    [totalSeconds % 60, 's'],
  ];
  const first = parts.findIndex(([value]) => value > 0);
  if (first === -1) return '0s';
  const shown = parts.slice(first, first + 2).filter(([value], i) => i === 0 || value > 0);
  return shown.map(([value, unit]) => `${value}${unit}`).join(' ');
}

/** Seconds as a duration ("6h"). */
export function formatSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return DASH;
  return formatDuration(seconds * 1000);
}

/** "5m ago" / "in 5m" relative to now; 0 or missing → "never". */
export function formatAgo(atMs: number | null | undefined, nowMs: number, never = 'never'): string {
  if (!atMs || atMs <= 0) return never;
  const delta = nowMs - atMs;
  if (Math.abs(delta) < 1000) return 'just now';
  return delta >= 0 ? `${formatDuration(delta)} ago` : `in ${formatDuration(-delta)}`;
}

/** A timestamp as "2024-05-01 14:03:07" in local time; 0 → "—". */
export function formatTime(atMs: number | null | undefined): string {
  if (!atMs || atMs <= 0) return DASH;
  const d = new Date(atMs);
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A metric value in its API unit (percent, bytes, bytes_per_second, seconds, count, load). */
export function formatMetric(unit: string, value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  switch (unit) {
    case 'percent':
      return formatPercent(value);
    case 'bytes':
      return formatBytes(value);
    case 'bytes_per_second':
      return formatRate(value);
    case 'seconds':
      return formatSeconds(value);
    case 'load':
      return value.toFixed(2);
    default:
      return trimZeros(value.toFixed(1));
  }
}

/**
 * Parses a duration like "90s", "15m", "1h30m", "2d" or a bare number of
 * seconds into seconds; null when it is not one.
 */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim().toLowerCase();
  if (!trimmed) return null;
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/g;
  const factors: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(re)) {
    total += Number(match[1]) * factors[match[2]];
    consumed += match[0].length;
  }
  if (consumed !== trimmed.replace(/\s+/g, '').length && consumed !== trimmed.length) return null;
  return consumed > 0 ? Math.round(total) : null;
}

/** The first 12 characters of a hash. */
export function shortHash(hash: string): string {
  return hash.length > 12 ? hash.slice(0, 12) : hash;
}

function trimZeros(text: string): string {
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}
