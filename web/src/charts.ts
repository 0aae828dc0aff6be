// uPlot charts fed by a SeriesBuffer. Loaded only by the host page.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { h } from './dom';
import { formatBytes, formatMetric, formatRate } from './format';
import { SeriesBuffer } from './series';
import type { MetricPoint } from './types';

export interface ChartSpec {
  metric: string;
  title: string;
  unit: string;
}

export class MetricChart {
  readonly el: HTMLElement;
  readonly buffer: SeriesBuffer;
  private plot: uPlot | null = null;
  private readonly plotBox: HTMLElement;
  private readonly latestEl: HTMLElement;
  private readonly resize: ResizeObserver | null = null;
  private live = 0;
  private pending = false;

  constructor(
    readonly spec: ChartSpec,
    private windowMs: number,
  ) {
    this.buffer = new SeriesBuffer(windowMs);
    this.latestEl = h('span', { class: 'chart-latest', testid: `chart-${spec.metric}-latest` }, '—');
    this.plotBox = h('div', { class: 'chart-plot' });
    this.el = h(
      'figure',
      {
        class: 'chart',
        testid: `chart-${spec.metric}`,
        'data-metric': spec.metric,
        'data-points': '0',
        'data-live-points': '0',
        role: 'group',
        'aria-label': `${spec.title} chart`,
      },
      h('figcaption', null, h('span', { class: 'chart-title' }, spec.title), ' ', this.latestEl),
      this.plotBox,
    );
    if (typeof ResizeObserver !== 'undefined') {
      this.resize = new ResizeObserver(() => this.fit());
      this.resize.observe(this.plotBox);
    }
  }

  setUnit(unit: string): void {
    if (unit && unit !== this.spec.unit) {
      this.spec.unit = unit;
      this.plot?.destroy();
      this.plot = null;
    }
  }

  setWindow(windowMs: number): void {
    this.windowMs = windowMs;
    this.buffer.setWindow(windowMs);
  }

  /** History from the JSON query (replaces what the chart holds). */
  loadHistory(points: MetricPoint[]): void {
    this.buffer.load(points);
    this.update();
  }

  /** One live point. */
  append(point: MetricPoint): void {
    if (this.buffer.append(point)) {
      this.live += 1;
      this.el.setAttribute('data-live-points', String(this.live));
      this.update();
    }
  }

  /** Forgets every point (before loading another time range). */
  clear(): void {
    this.buffer.clear();
    this.update();
  }

  destroy(): void {
    this.resize?.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }

  private update(): void {
    this.buffer.trim(Date.now());
    this.el.setAttribute('data-points', String(this.buffer.length));
    const latest = this.buffer.latest;
    this.latestEl.textContent = latest ? formatMetric(this.spec.unit, latest.avg) : '—';
    // Redraw at most once per frame.
    if (this.pending) return;
    this.pending = true;
    const draw = () => {
      this.pending = false;
      this.draw();
    };
    if (typeof requestAnimationFrame !== 'undefined' && document.visibilityState === 'visible') requestAnimationFrame(draw);
    else setTimeout(draw, 0);
  }

  private size(): { width: number; height: number } {
    const width = Math.max(280, Math.floor(this.plotBox.clientWidth || 420));
    return { width, height: 180 };
  }

  private fit(): void {
    if (this.plot) this.plot.setSize(this.size());
  }

  private draw(): void {
    const data = this.buffer.data() as uPlot.AlignedData;
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    if (!this.plotBox.isConnected) return;
    const unit = this.spec.unit;
    const axisValue = (v: number): string => {
      if (unit === 'percent') return `${Math.round(v)}%`;
      if (unit === 'bytes_per_second') return formatRate(v);
      if (unit === 'bytes') return formatBytes(v);
      return String(Math.round(v * 100) / 100);
    };
    const windowMs = () => this.windowMs;
    const opts: uPlot.Options = {
      ...this.size(),
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: () => {
            const now = Date.now() / 1000;
            return [now - windowMs() / 1000, now];
          },
        },
        y: {
          range: (_u, _min, max) => {
            if (unit === 'percent') return [0, Math.max(100, max ?? 0)];
            const top = max && max > 0 ? max * 1.15 : 1;
            return [0, top];
          },
        },
      },
      axes: [
        { stroke: '#5b6472', grid: { stroke: '#e6e8ec' } },
        { stroke: '#5b6472', grid: { stroke: '#e6e8ec' }, size: 70, values: (_u, ticks) => ticks.map(axisValue) },
      ],
      series: [
        {},
        { label: 'avg', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.08)', value: (_u, v) => (v == null ? '—' : formatMetric(unit, v)) },
        { label: 'max', stroke: '#f59e0b', width: 1, dash: [4, 4], value: (_u, v) => (v == null ? '—' : formatMetric(unit, v)) },
      ],
    };
    this.plot = new uPlot(opts, data, this.plotBox);
  }
}
