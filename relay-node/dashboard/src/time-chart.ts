import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Indices of values with no value on either side: uPlot draws no line through them. */
function isolated(u: uPlot, seriesIndex: number): number[] | null {
  const values = u.data[seriesIndex] ?? [];
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (values[i] != null && values[i - 1] == null && values[i + 1] == null) out.push(i);
  }
  return out;
}

export interface ChartLine {
  label: string;
  color: string;
  dash?: number[];
}

/**
 * A live time chart (uPlot, light DOM so its stylesheet applies). `data` is `[times, ...lines]`;
 * the table fallback for screen readers is rendered by the caller.
 */
export class TimeChart extends HTMLElement {
  #plot: uPlot | undefined;
  #resize = new ResizeObserver(() => this.#fit());
  lines: ChartLine[] = [];
  unit = '';

  /** How many points the chart holds, and the time of the first (tests read them). */
  points = 0;
  firstTime: number | null = null;

  set data(data: (number | null)[][]) {
    if (!this.#plot) this.#create();
    this.points = data[0]?.length ?? 0;
    this.firstTime = data[0]?.[0] ?? null;
    this.#plot?.setData(data as uPlot.AlignedData);
  }

  connectedCallback() {
    this.#resize.observe(this);
  }

  disconnectedCallback() {
    this.#resize.disconnect();
    this.#plot?.destroy();
    this.#plot = undefined;
  }

  #create() {
    const unit = this.unit;
    this.#plot = new uPlot(
      {
        width: Math.max(200, this.clientWidth),
        height: 180,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          // At least a minute and at most five, so a fresh page does not stretch one point over years.
          x: { time: true, range: (_u, min, max) => [Math.max(max - 300, Math.min(min, max - 60)), max] },
          y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] },
        },
        axes: [
          // Clock times on whole minutes, at least 80 px apart: date labels overlapped on a 390 px
          // phone, and sub-minute ticks repeated one "HH:MM" label.
          {
            space: 80,
            incrs: [60, 120, 300, 600, 1800, 3600],
            values: (_u, ticks) =>
              ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
          },
          { values: (_u, ticks) => ticks.map((t) => `${+t.toFixed(2)} ${unit}`), size: 64 },
        ],
        series: [
          {},
          ...this.lines.map((line) => ({
            label: line.label,
            stroke: line.color,
            width: 2,
            // Only a point with no neighbour is drawn as a dot (a line needs two).
            points: { show: true, size: 5, filter: isolated },
            dash: line.dash,
            spanGaps: true,
            value: (_u: uPlot, v: number | null) => (v == null ? '–' : `${+v.toFixed(2)} ${unit}`),
          })),
        ],
      },
      [[], ...this.lines.map(() => [])],
      this,
    );
  }

  #fit() {
    if (this.#plot && this.clientWidth > 0) this.#plot.setSize({ width: this.clientWidth, height: 180 });
  }
}

customElements.define('time-chart', TimeChart);
