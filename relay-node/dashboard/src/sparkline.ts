import { svg, type SVGTemplateResult } from 'lit';

/** A tiny inline SVG trend line (decorative: the value is also shown as text beside it). */
export function sparkline(values: number[], width = 90, height = 22): SVGTemplateResult {
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  return svg`<svg class="spark" width=${width} height=${height} viewBox="0 0 ${width} ${height}" aria-hidden="true"
    focusable="false"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points=${points.join(' ')}></polyline></svg>`;
}
